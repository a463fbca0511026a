"""The Faust app: the ``leads`` table and the ``score`` agent.

Per input record, in one processing step: decode (or dead-letter), apply the
pure scoring core, send actions, the audit record and the lead snapshot, then
write the table. Offsets are committed by Faust after the step completes.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable
from typing import Any

import faust
import orjson

from leadscore.codecs.dlq import dlq_headers
from leadscore.codecs.events import decode_event
from leadscore.codecs.outputs import encoder
from leadscore.config import Settings
from leadscore.errors import InvalidEvent
from leadscore.logs import redact
from leadscore.scoring import LeadRecord, Rules, apply_event, snapshot

log = logging.getLogger("leadscore.stream")

RAW: faust.Schema[bytes, bytes] = faust.Schema(
    key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
)
TOO_LATE = "too_late"


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _credentials(settings: Settings) -> Any:
    if settings.security_protocol == "PLAINTEXT":
        return None
    context = ssl.create_default_context(
        cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None
    )
    if settings.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password.get_secret_value() if settings.sasl_password else None,
            mechanism=settings.sasl_mechanism,
            ssl_context=context if settings.security_protocol == "SASL_SSL" else None,
        )
    return faust.SSLCredentials(context)


def build_app(
    settings: Settings,
    rules: Rules,
    partitions: int,
    clock: Callable[[], int] = wall_clock_ms,
) -> faust.App:
    """The worker's Faust app. ``partitions`` is the input topic's partition count."""
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{host.strip()}" for host in settings.bootstrap_servers.split(",")],
        broker_credentials=_credentials(settings),
        store="rocksdb://",
        datadir=str(settings.data_dir),
        processing_guarantee=settings.processing_guarantee,
        topic_partitions=partitions,
        topic_replication_factor=settings.replication_factor,
        consumer_auto_offset_reset="earliest",
        web_enabled=settings.web_enabled,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        producer_acks=-1,
    )
    events = app.topic(settings.events_topic, schema=RAW)
    actions = app.topic(settings.actions_topic, schema=RAW)
    lead_state = app.topic(settings.lead_state_topic, schema=RAW)
    score_changes = app.topic(settings.score_changes_topic, schema=RAW)
    dlq = app.topic(settings.dlq_topic, schema=RAW)
    # key_type and value_type bytes make Faust use the raw codec for the changelog too.
    leads = app.Table(
        "leads",
        partitions=partitions,
        key_type=bytes,
        value_type=bytes,
        help="lead records by contact id",
    )

    encode_action = encoder("LeadAction", settings.output_format)
    encode_change = encoder("ScoreChange", settings.output_format)
    encode_state = encoder("LeadState", settings.output_format)
    max_bytes = settings.max_event_bytes

    async def dead_letter(message: Any, error: InvalidEvent) -> None:
        headers = dlq_headers(
            error,
            message.topic,
            message.partition,
            message.offset,
            int(message.timestamp * 1000) if message.timestamp else None,
        )
        await dlq.send(key=message.key, value=message.value, headers=headers)
        log.warning(
            "dead-lettered reason=%s partition=%s offset=%s contact=%s",
            error.reason,
            message.partition,
            message.offset,
            redact(message.key),
        )

    @app.agent(events, name="score")
    async def score(stream: faust.StreamT[Any]) -> None:
        async for event in stream.events():
            message = event.message
            try:
                engagement = decode_event(message.key, message.value, max_bytes)
            except InvalidEvent as error:
                await dead_letter(message, error)
                continue
            key = message.key
            stored = leads.get(key)
            record = LeadRecord.from_dict(orjson.loads(stored)) if stored else None
            now = clock()
            applied = apply_event(record, engagement, rules, now)
            if applied.status == "duplicate":
                continue
            if applied.status == TOO_LATE:
                await dead_letter(
                    message,
                    InvalidEvent(
                        TOO_LATE,
                        "event is older than this lead's dedupe horizon; it cannot be checked "
                        "for duplicates, so it is not scored",
                    ),
                )
                continue
            for action in applied.actions:
                await actions.send(key=key, value=encode_action(action.to_dict()))
            if applied.change is not None:
                await score_changes.send(key=key, value=encode_change(applied.change.to_dict()))
            await lead_state.send(
                key=key, value=encode_state(snapshot(applied.record, rules, now).to_dict())
            )
            leads[key] = orjson.dumps(applied.record.to_dict())

    return app
