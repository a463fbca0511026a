"""What both sinks do with Kafka: their consumer and producer, reading records, decoding
actions, and the headers of the sink dead-letter topic."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer
from fastavro.validation import ValidationError, validate

from leadscore.codecs.avro import schema
from leadscore.codecs.dlq import HEADER_PREFIX
from leadscore.codecs.read_back import decode_output
from leadscore.config import Settings
from leadscore.errors import InvalidAction, UnpositionedMessage
from leadscore.metrics import sink_lag_stats
from leadscore.scoring.events import id_problem

log = logging.getLogger("leadscore.sink")

Headers = list[tuple[str, str | bytes | None]]


STATS_INTERVAL_MS = 5000


def sink_consumer(
    settings: Settings, group: str, lag_of: str | None = None, **extra: Any
) -> Consumer:
    """A consumer that commits only what the sink says it finished.

    With ``lag_of`` (a sink name) it reports its lag as ``leadscore_sink_consumer_lag``.
    """
    if lag_of is not None:
        extra = {
            "statistics.interval.ms": STATS_INTERVAL_MS,
            "stats_cb": sink_lag_stats(lag_of),
            **extra,
        }
    return Consumer(
        {
            **settings.confluent_config(),
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "session.timeout.ms": int(settings.sink_session_timeout_seconds * 1000),
            **extra,
        }
    )


def sink_producer(settings: Settings) -> Producer:
    return Producer({**settings.confluent_config(), "enable.idempotence": True, "linger.ms": 5})


def position(message: Message) -> tuple[int, int]:
    partition, offset = message.partition(), message.offset()
    if partition is None or offset is None:
        raise UnpositionedMessage(f"a consumed message without a position: {message.error()}")
    return partition, offset


def records(messages: Iterable[Message], sink: str) -> Iterator[tuple[Message, int, int]]:
    """The records among consumed messages, with partition and offset; errors are logged."""
    for message in messages:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("%s: consumer error: %s", sink, error)
            continue
        yield (message, *position(message))


FIELD = re.compile(r"(?:LeadAction|AccountAction)\.(\w+)")


def decode_action(
    value: bytes | None, required: Iterable[str] = (), record: str = "LeadAction"
) -> dict[str, Any]:
    """A LeadAction from leadscore.actions (``record`` AccountAction: from
    leadscore.account-actions), in any output format, checked against its schema in
    schemas/, or InvalidAction saying why not."""
    try:
        action = decode_output(value)
    except Exception as exc:  # orjson, fastavro: many error types on bad bytes
        raise InvalidAction("undecodable", f"not JSON or Avro: {type(exc).__name__}") from None
    if not isinstance(action, dict):
        raise InvalidAction("invalid_action", "not a record")
    missing = [k for k in required if action.get(k) is None]
    if missing:
        raise InvalidAction("invalid_action", f"missing {', '.join(missing)}")
    try:
        validate(action, schema(record).parsed, raise_errors=True)
    except ValidationError as exc:
        # Field names only: fastavro's texts quote the offending values too.
        fields = sorted({m.group(1) for e in exc.errors if (m := FIELD.search(str(e)))})[:5]
        raise InvalidAction(
            "invalid_action", f"does not match the {record} schema: {', '.join(fields)}"
        ) from None
    field = "contact_id" if record == "LeadAction" else "account_id"
    problem = id_problem(action[field])
    if problem:
        raise InvalidAction("invalid_action", f"{field} {problem}")
    return action


def dead_letter_headers(sink: str, reason: str, message: Message, **details: object) -> Headers:
    """Why a sink could not act on a record, and where the record came from."""
    fields: dict[str, object] = {
        "sink": sink,
        "error.reason": reason,
        "source.topic": message.topic(),
        "source.partition": message.partition(),
        "source.offset": message.offset(),
        **details,
    }
    return [(HEADER_PREFIX + name, str(value).encode()[:1000]) for name, value in fields.items()]
