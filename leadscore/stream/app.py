"""The Faust app: the ``leads`` table and the ``score`` agent.

Per batch of input records (what has arrived, up to LEADSCORE_BATCH_MAX_EVENTS):
``leadscore.step.batch.process`` decodes (or dead-letters), scores and says
what to send and write; the agent sends the actions, audit records and lead
snapshots, waits for where the audit records landed (each lead's history), and
writes each touched lead once. The batch is acknowledged after that, and Faust
commits acknowledged offsets (``faust_ext.ordering`` holds the order).

Decay-driven changes: each lead's next crossing time is in its lead record and
indexed by a per-partition timer wheel in memory, rebuilt from the lead records
when the partition is assigned (``leadscore.step.wheel``), as is the count of
leads by stage. A timer sends one tick record per owned partition to the ticks
topic; the agent handles the tick like any record of that partition, so the
re-assessment, its actions and the table writes happen in a normal processing
step (and in its transaction under exactly_once).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NoReturn, TypeVar, cast

import faust

from leadscore.codecs.accounts import TICK_HEADER, decode_account, encode_entry, is_account_key
from leadscore.codecs.leads import decode_lead, encode_lead
from leadscore.codecs.outputs import encoder
from leadscore.config import PRODUCER_MAX_REQUEST_BYTES, Settings
from leadscore.kafka_admin import TopicSpec
from leadscore.metrics import (
    ACCOUNT_ACTIONS,
    ACCOUNT_UPDATES,
    ACTIONS,
    DEAD_LETTERS,
    ERASURES,
    EVENT_TO_ACTION,
    EVENTS,
    HANDOFFS,
    INGEST_TO_SCORE,
    MERGES,
    OFF_PARTITION,
    PROCESSING,
    REWOUND,
    TIME_TO_THRESHOLD,
    TOP_ACCOUNTS,
    WorkerView,
    set_build_info,
    watch_worker,
)
from leadscore.scoring import LeadRecord, Rules
from leadscore.scoring.accounts import AccountRecord, EngagementIndex
from leadscore.scoring.ranking import RankIndex
from leadscore.step.accounts import AccountEffects, process_accounts
from leadscore.step.batch import Effects, Encoders, Input, Limits, process
from leadscore.step.privacy import SUPPRESSED_PREFIX
from leadscore.step.wheel import Timers
from leadscore.stream.faust_ext import App, broker_urls
from leadscore.stream.faust_ext.consumer import (
    Consumer,
    HandoffsFirst,
    heal_head_holes,
    stuck_commits,
)
from leadscore.stream.faust_ext.ordering import outputs_of
from leadscore.stream.faust_ext.recovery import ChangelogLoader
from leadscore.stream.faust_ext.streams import Stream, in_partition_of
from leadscore.stream.history import ChangeReader, keep_change
from leadscore.stream.partitioning import PartitionCheck
from leadscore.stream.pipeline import Pipeline
from leadscore.stream.sender import DirectSender
from leadscore.stream.ticks import Ticker
from leadscore.stream.web import api_middleware, install_web, not_ready, owned_partitions

log = logging.getLogger("leadscore.stream")

RAW: faust.Schema[bytes, bytes] = faust.Schema(
    key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
)


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


EXIT_PROCESSING_FAILED = 70  # EX_SOFTWARE
EXIT_STOP_TIMED_OUT = 75  # EX_TEMPFAIL


def start_stop_watchdog(seconds: float) -> threading.Timer:
    """Exit the process if it is still running ``seconds`` from now.

    Started when the worker is told to stop. A clean stop commits offsets and
    flushes the changelog, which needs the Kafka cluster; while the cluster is
    gone Faust's stop waits on reconnects for ever, and the worker would ignore
    SIGTERM. Exiting without the clean stop loses nothing: the offsets it could
    not commit are processed again, and the clean-stop marker is missing, so the
    next start rebuilds local state from the changelog.
    """

    def give_up() -> None:
        log.error(
            "the worker did not stop within LEADSCORE_STOP_TIMEOUT_SECONDS=%s of being "
            "told to (is the Kafka cluster reachable?); exiting without a clean stop "
            "(exit %d): what was not committed is processed again, and the next start "
            "rebuilds local state from the changelog",
            seconds,
            EXIT_STOP_TIMED_OUT,
        )
        logging.shutdown()
        os._exit(EXIT_STOP_TIMED_OUT)

    timer = threading.Timer(seconds, give_up)
    timer.daemon = True
    timer.start()
    return timer


class Worker(faust.Worker):
    """Faust's worker, which gives up a stop that outlasts ``stop_timeout`` seconds."""

    def __init__(self, app: faust.App, *, stop_timeout: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.stop_timeout = stop_timeout

    def _schedule_shutdown(self, signal: Any) -> None:
        if not self._signal_stop_time:  # the first signal; a second one changes nothing
            start_stop_watchdog(self.stop_timeout)
        super()._schedule_shutdown(signal)


def stop_unprocessed(message: Any, error: Exception, settings: Settings) -> NoReturn:
    """Stop the worker at once, without acknowledging ``message``.

    Faust acknowledges a record whose agent raised (the stream's ``finally`` acks
    it) and restarts the agent at the next record, so an error would commit an
    offset that was never processed: the event would be lost. Exiting here, before
    control returns to the stream, leaves the record and everything after it
    uncommitted; local state is discarded at the next start (the clean-stop
    marker is missing) and rebuilt from the changelog, and the record is
    processed again. A supervisor restarts the worker; while the cause remains
    (a full disk, say) it stops again, having committed nothing it did not process.
    """
    cause = f"{type(error).__name__}: {error}"
    if getattr(error, "errno", None) == errno.ENOSPC or "No space left" in str(error):
        cause += (
            f" -- the state directory LEADSCORE_DATA_DIR={settings.data_dir} is full; "
            "free space there, then restart the worker"
        )
    log.critical(
        "processing %s[%s] offset %s failed, stopping without committing it "
        "(it is processed again after a restart): %s",
        message.topic,
        message.partition,
        message.offset,
        cause,
        exc_info=error,
    )
    logging.shutdown()
    os._exit(EXIT_PROCESSING_FAILED)


def consumer_lag(app: faust.App, topic: str) -> dict[tuple[str, int], int]:
    """Per assigned partition of ``topic``: the high watermark minus the committed offset.

    The high watermark is the one the consumer last fetched (Faust's monitor); the
    committed offset is Faust's own record of it (set at assignment and at each commit).
    """
    ends = app.monitor.tp_end_offsets
    committed = app.consumer._committed_offset  # type: ignore[attr-defined]  # Faust's Consumer, not its ConsumerT
    lag = {}
    for tp in app.consumer.assignment():
        if tp.topic != topic or tp not in ends:
            continue
        lag[(tp.topic, tp.partition)] = max(0, ends[tp] - (committed.get(tp) or 0))
    return lag


def changelog_specs(app: faust.App) -> list[TopicSpec]:
    """The changelog topics of ``app``'s tables, configured as Faust would create them."""
    return [
        TopicSpec(
            table.changelog_topic.get_topic_name(),
            {"cleanup.policy": "compact", **table.extra_topic_configs},
        )
        for table in app.tables.values()
    ]


#: Changelog topic settings that keep recovery proportional to the leads, not the events.
#: Kafka never compacts a partition's active segment, and with the defaults (1 GiB
#: segments, rolled every 7 days, cleaned when half the log is superseded) a changelog
#: holds every write of the last week, and a recovery replays every one of them.
#: Rolling every 10 minutes or 64 MiB and cleaning at 10% dirty keeps it near one
#: record per key. They apply to changelogs created from now on; an existing one keeps
#: its settings until altered (kafka-configs --alter --entity-type topics ...).
CHANGELOG_COMPACTION = {
    "segment.ms": str(10 * 60 * 1000),
    "segment.bytes": str(64 * 1024 * 1024),
    "min.cleanable.dirty.ratio": "0.1",
}


def table_partitions(app: faust.App, table: Any) -> list[int]:
    """The partitions of ``table`` this worker holds as active (not standby)."""
    topic = table.changelog_topic.get_topic_name()
    return sorted(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic)


def stored_items(table: Any, partition: int) -> Iterator[tuple[bytes, bytes]]:
    """The records of one partition of ``table``'s local store.

    Reads the RocksDB store's per-partition databases (Faust's store keeps one per
    partition and offers no public way to read one; the version is pinned).
    """
    store = table.data
    db = store._dbs.get(partition)
    if db is None:
        return iter(())
    return cast(Iterator[tuple[bytes, bytes]], store._visible_items(db))


def headers_of(headers: Any) -> tuple[tuple[str, bytes], ...]:
    """A consumed record's headers as (name, value) pairs (aiokafka gives a sequence of
    pairs, Faust may hand on a mapping)."""
    if not headers:
        return ()
    pairs = headers.items() if isinstance(headers, dict) else headers
    return tuple((str(name), bytes(value or b"")) for name, value in pairs)


R = TypeVar("R", LeadRecord, AccountRecord)


def noted(
    records: Iterable[R], wheel: list[tuple[str, int | None, str]], name: Callable[[R], str]
) -> Iterator[R]:
    """``records``, each noted in ``wheel`` as (its name, due time, stage) on its way: one
    decode per stored record for an index and the timer wheel (nothing kept besides)."""
    for record in records:
        wheel.append((name(record), record.due_ms, record.stage))
        yield record


def stored_accounts(items: Iterable[tuple[bytes, bytes]]) -> Iterator[AccountRecord]:
    """The account records of a store's items (members' shares left out)."""
    for key, raw in items:
        if is_account_key(key):
            yield decode_account(raw)


def stored_leads(items: Iterable[tuple[bytes, bytes]]) -> Iterator[LeadRecord]:
    """The lead records (and stubs) of a store's items; suppression entries left out."""
    for key, raw in items:
        if not key.startswith(SUPPRESSED_PREFIX):
            yield decode_lead(raw, key)


def build_app(
    settings: Settings,
    rules: Rules,
    partitions: int,
    clock: Callable[[], int] = wall_clock_ms,
) -> faust.App:
    """The worker's Faust app. ``partitions`` is the input topic's partition count."""
    app = App(
        settings.app_id,
        broker=broker_urls(settings.bootstrap_servers),
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
        canonical_url=settings.canonical_web_url(),
        web_application_options={"middlewares": [api_middleware(settings)]},
        # Faust's own /router and /table pages would show table contents unauthenticated.
        web_router_enabled=False,
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
        producer_acks=-1,
        producer_max_request_size=PRODUCER_MAX_REQUEST_BYTES,
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_seconds / 3),
        # No agent runs on the leader only: no need for Faust's leader topic.
        topic_disable_leader=True,
    )
    set_build_info(rules.version)
    app.changelog_loader = ChangelogLoader(
        settings.confluent_config(), group_id=f"{settings.app_id}-changelog-loader"
    )
    # The agent reads events, timer ticks and hand-off records: the three topics have the
    # same partition count, so Faust assigns partition N of each to the same worker
    # (co-partitioned), with the leads table's partition N.
    inputs = app.topic(
        settings.events_topic,
        settings.ticks_topic,
        settings.handoff_topic,
        settings.privacy_topic,
        schema=RAW,
    )
    if settings.processing_guarantee == "at_least_once":
        # After an assignment, hand-off records that wait are read before the rest (a
        # replay after a crash takes them in the order the lost run did: consumer, 10).
        app.handoffs_first = HandoffsFirst(
            settings.handoff_topic,
            frozenset((settings.events_topic, settings.ticks_topic, settings.privacy_topic)),
        )
    handoff = app.topic(settings.handoff_topic, schema=RAW)
    privacy = app.topic(settings.privacy_topic, schema=RAW)
    receipts = app.topic(settings.privacy_receipts_topic, schema=RAW)
    actions = app.topic(settings.actions_topic, schema=RAW)
    lead_state = app.topic(settings.lead_state_topic, schema=RAW)
    score_changes = app.topic(settings.score_changes_topic, schema=RAW)
    dlq = app.topic(settings.dlq_topic, schema=RAW)
    account_updates = app.topic(settings.account_updates_topic, schema=RAW)
    account_state = app.topic(settings.account_state_topic, schema=RAW)
    account_actions = app.topic(settings.account_actions_topic, schema=RAW)

    # Each table partition is its own RocksDB store (one per partition owned).
    # Faust's defaults (64 MiB memtables, three per store, and a 2 GiB block cache each)
    # would let a dozen stores grow past any memory budget; these bound a store to about
    # 2 x write buffer + block cache.
    rocksdb = {
        "write_buffer_size": settings.rocksdb_write_buffer_bytes,
        "max_write_buffer_number": 2,
        "block_cache_size": settings.rocksdb_block_cache_bytes,
    }

    # key_type and value_type bytes make Faust use the raw codec for the changelog too.
    def raw_table(name: str, about: str) -> Any:
        return app.Table(
            name,
            partitions=partitions,
            key_type=bytes,
            value_type=bytes,
            help=about,
            options=dict(rocksdb),  # Faust's store pops keys from this dict: one each
            extra_topic_configs=dict(CHANGELOG_COMPACTION),
        )

    leads = raw_table("leads", "lead records by contact id")
    history_size = settings.history_size
    slot_ms = max(1, int(settings.timer_interval_seconds * 1000))
    timers = Timers(slot_ms)
    ranks = RankIndex(rules)  # the ranked lists' index (GET /leads, /leads/cooling)
    # Accounts (leadscore.step.accounts): their records and each member's last share.
    accounts = raw_table("accounts", "accounts, and each contact's last share of one")
    account_timers = Timers(slot_ms)
    engagement = EngagementIndex(rules)  # the most engaged accounts, for the metrics

    @accounts.on_recover  # type: ignore[untyped-decorator]  # Faust's decorator is untyped
    async def index_accounts() -> None:
        """Rebuild the accounts' timer wheels and stage counts of the partitions now owned."""
        owned = table_partitions(app, accounts)
        now = clock()
        for partition in owned:
            wheel: list[tuple[str, int | None, str]] = []
            records = stored_accounts(stored_items(accounts, partition))
            engagement.rebuild(partition, noted(records, wheel, lambda r: r.account_id))
            account_timers.rebuild(partition, wheel, now)
        account_timers.keep_only(owned)
        engagement.keep_only(owned)

    @leads.on_recover  # type: ignore[untyped-decorator]  # Faust's decorator is untyped
    async def index_leads() -> None:
        """Rebuild the timer wheels and stage counts of the partitions now owned."""
        owned = table_partitions(app, leads)
        now = clock()
        for partition in owned:
            started = time.perf_counter()
            # One pass: each record decoded once, for the ranked lists and the wheel.
            wheel: list[tuple[str, int | None, str]] = []
            records = stored_leads(stored_items(leads, partition))
            ranks.rebuild(partition, noted(records, wheel, lambda r: r.contact_id))
            timers.rebuild(partition, wheel, now)
            log.info(
                "partition %s: %s lead(s) indexed for decay timers and ranked lists in %.2f s",
                partition,
                sum(timers.stages[partition].values()),
                time.perf_counter() - started,
            )
        timers.keep_only(owned)
        ranks.keep_only(owned)

    metrics_on = settings.metrics_enabled
    since_event, since_ingest = EVENT_TO_ACTION.labels("event"), EVENT_TO_ACTION.labels("ingest")
    for threshold in rules.thresholds:  # series from the start, so dashboards show 0
        ACTIONS.labels("threshold_crossed", threshold.name)
        TIME_TO_THRESHOLD.labels(threshold.name)
    for threshold in rules.accounts.thresholds:
        ACCOUNT_ACTIONS.labels("account_threshold_crossed", threshold.name)
    for account_stage in rules.accounts.stages:
        ACCOUNT_ACTIONS.labels("account_stage_changed", account_stage.name)
    for outcome in ("applied", "duplicate"):
        ACCOUNT_UPDATES.labels(outcome)

    limits = Limits(
        max_event_bytes=settings.max_event_bytes,
        max_properties_bytes=settings.max_properties_bytes,
        max_output_bytes=settings.max_output_bytes,
        max_ahead_ms=int(settings.max_clock_skew_seconds * 1000),
        partitions=partitions,
        privacy_key=settings.privacy_hash_key(),
    )
    destinations = {
        "actions": actions,
        "score_changes": score_changes,
        "lead_state": lead_state,
        "dlq": dlq,
        "handoff": handoff,
        "privacy": privacy,
        "receipts": receipts,
        "account_updates": account_updates,
        "account_state": account_state,
        "account_actions": account_actions,
    }
    encoders = Encoders(
        action=encoder("LeadAction", settings.output_format),
        change=encoder("ScoreChange", settings.output_format),
        state=encoder("LeadState", settings.output_format),
        topic_names={
            **{name: topic.get_topic_name() for name, topic in destinations.items()},
            "leads": leads.changelog_topic.get_topic_name(),
        },
    )
    encode_account_state = encoder("AccountState", settings.output_format)
    encode_account_action = encoder("AccountAction", settings.output_format)
    partition_check = PartitionCheck(partitions)
    log_levels = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

    def observe(effects: Effects, started: float) -> None:
        """Count what a batch did (the latencies are taken now, after its outputs were sent)."""
        for reason, count in effects.dead_letters.items():
            DEAD_LETTERS.labels(reason).inc(count)
        if effects.dead_letters:
            EVENTS.labels("dead_lettered").inc(sum(effects.dead_letters.values()))
        if effects.rewound:
            REWOUND.inc(effects.rewound)
        partition_check.count(effects.off_partition)  # warns at most once a minute
        if not metrics_on:
            return
        if effects.off_partition:
            OFF_PARTITION.inc(sum(effects.off_partition.values()))
        if effects.merges:
            MERGES.inc(effects.merges)
        for kind, count in effects.handoffs.items():
            HANDOFFS.labels(kind).inc(count)
        if effects.duplicates:
            EVENTS.labels("duplicate").inc(effects.duplicates)
        if effects.frozen:
            EVENTS.labels("frozen").inc(effects.frozen)
        if effects.suppressed:
            EVENTS.labels("suppressed").inc(effects.suppressed)
        if effects.erased:
            ERASURES.inc(effects.erased)
        for (kind, name), count in effects.actions.items():
            ACTIONS.labels(kind, name).inc(count)
        for name, seconds in effects.time_to_threshold:
            TIME_TO_THRESHOLD.labels(name).observe(seconds)
        if not effects.scored:
            return
        EVENTS.labels("scored").inc(len(effects.scored))
        sent = time.time()
        for scored in effects.scored:
            ingested = max(0.0, sent - scored.timestamp_ms / 1000) if scored.timestamp_ms else None
            if ingested is not None:
                INGEST_TO_SCORE.observe(ingested)
            if scored.actions:
                occurred = max(0.0, sent - scored.occurred_ms / 1000)
                for _ in range(scored.actions):
                    since_event.observe(occurred)
                    if ingested is not None:
                        since_ingest.observe(ingested)
        # per scored event: the batch's time shared out
        each = (time.perf_counter() - started) / len(effects.scored)
        for _ in effects.scored:
            PROCESSING.observe(each)

    def inputs_of(events: list[Any]) -> Iterator[Input]:
        """Either agent's records as the steps take them (headers only where a step reads
        them: hand-offs, and account updates with their tick header)."""
        ticks, handoffs, requests, updates = (
            settings.ticks_topic,
            settings.handoff_topic,
            settings.privacy_topic,
            settings.account_updates_topic,
        )
        for event in events:
            message = event.message
            handed = message.topic == handoffs
            yield Input(
                message.topic,
                message.partition,
                message.offset,
                message.key,
                message.value,
                int(message.timestamp * 1000) if message.timestamp else None,
                tick=message.topic == ticks,
                handoff=handed,
                privacy=message.topic == requests,
                headers=headers_of(message.headers) if handed or message.topic == updates else (),
            )

    # at_least_once: outputs through librdkafka, a delivery fence per batch (stream.sender);
    # exactly_once: through Faust's topics, each in its source partition's transaction.
    direct = (
        DirectSender(settings, outputs_of(app))
        if settings.processing_guarantee == "at_least_once"
        else None
    )
    topic_names = {name: topic.get_topic_name() for name, topic in destinations.items()}

    async def send_in_transactions(effects: Any, of_partition: dict[int, Any]) -> None:
        changes: list[tuple[bytes, Any]] = []
        for output in effects.outputs:
            # Under exactly_once an output joins the transaction of its source's partition.
            with in_partition_of(of_partition[output.source]):
                sent = await destinations[output.destination].send(
                    key=output.key,
                    value=output.value,
                    partition=output.partition,
                    headers=list(output.headers) or None,
                )  # fenced: see faust_ext.ordering
            if output.destination == "score_changes" and output.key is not None and history_size:
                changes.append((output.key, sent))
        for key, sent in changes:  # where each landed: the lead's history (stream.history)
            landed = await sent
            written = effects.writes.get(key)
            if written is not None and written[1] is not None:
                keep_change(written[1], landed.partition, landed.offset, history_size)

    def rank(effects: Effects) -> None:
        """The ranked lists' index follows the lead writes as the step makes them (as lead
        queries read batches in flight before the table)."""
        for key, (partition, record) in effects.writes.items():
            if not key.startswith(SUPPRESSED_PREFIX):
                ranks.put(partition, key.decode("utf-8"), record)

    def write_logs(lines: Iterable[Any]) -> None:
        for line in lines:
            log.log(log_levels[line.level], line.message, *line.args)

    def finish(effects: Effects, started: float) -> None:
        write_logs(effects.logs)
        observe(effects, started)

    def finish_accounts(effects: AccountEffects, started: float) -> None:
        write_logs(effects.logs)
        for reason, count in effects.dead_letters.items():
            DEAD_LETTERS.labels(reason).inc(count)
        if metrics_on:
            ACCOUNT_UPDATES.labels("applied").inc(effects.applied)
            ACCOUNT_UPDATES.labels("duplicate").inc(effects.duplicates)
            for (kind, name), count in effects.actions.items():
                ACCOUNT_ACTIONS.labels(kind, name).inc(count)

    #: A batch's effects from its events and a reader of the table as it stands.
    Compute = Callable[[list[Any], Callable[[int, bytes], Any]], Any]

    def score_leads(events: list[Any], read: Callable[[int, bytes], Any]) -> Effects:
        effects = process(inputs_of(events), read, timers, rules, clock(), limits, encoders)
        rank(effects)
        return effects

    def score_accounts(events: list[Any], read: Callable[[int, bytes], Any]) -> AccountEffects:
        effects = process_accounts(
            inputs_of(events),
            read,
            account_timers,
            rules,
            clock(),
            encode_account_state,
            encode_account_action,
        )
        for partition, value in effects.writes.values():
            if isinstance(value, AccountRecord):
                engagement.put(partition, value)
        return effects

    async def step(
        events: list[Any],
        table: Any,
        compute: Compute,
        encode: Callable[[Any], bytes],
        done: Callable[[Any, float], None],
    ) -> None:
        """exactly_once: one batch, sent in its transactions, then its table entries written."""
        started = time.perf_counter()
        # The table reads and writes the partition of the current event: one per partition.
        of_partition = {event.message.partition: event for event in events}
        effects = compute(events, reader(table, of_partition, lambda _key: (False, None)))
        await send_in_transactions(effects, of_partition)
        for key, (partition, value) in effects.writes.items():
            with in_partition_of(of_partition[partition]):
                if value is not None:
                    table[key] = encode(value)
                elif key in table:
                    del table[key]  # a tombstone in the changelog, in the transaction
        done(effects, started)

    def reader(
        table: Any,
        of_partition: dict[int, Any],
        in_flight: Callable[[bytes], tuple[bool, Any]],
    ) -> Callable[[int, bytes], Any]:
        """Entries as the batches in flight left them (deleted ones included), else as the
        table has them.

        ``of_partition``: an event of the batch for each partition it has (the table
        reads the partition of the current event).
        """

        def read(partition: int, key: bytes) -> Any:
            written, hit = in_flight(key)
            if written:
                return hit
            with in_partition_of(of_partition[partition]):
                return table.get(key)

        return read

    # at_least_once: batches land in order while later ones are scored (stream.pipeline).
    pipeline = (
        Pipeline(
            sender=direct,
            table=leads,
            topic_names=topic_names,
            history_size=history_size,
            finish=finish,
        )
        if direct is not None
        else None
    )
    account_pipeline = (
        Pipeline(
            sender=direct,
            table=accounts,
            topic_names=topic_names,
            history_size=0,
            finish=finish_accounts,
            encode=encode_entry,
        )
        if direct is not None
        else None
    )

    async def pipelined(stream: Stream, pipeline: Pipeline, compute: Compute) -> None:
        """at_least_once: batches are processed while earlier ones land (``stream.pipeline``)."""

        async def land_all() -> None:
            try:
                await pipeline.land_all(stream.ack)
            except Exception as error:  # any failure must stop the worker, never skip
                stop_unprocessed(pipeline.oldest_events()[0].message, error, settings)

        lander = asyncio.ensure_future(land_all())
        try:
            async for events in stream.batches(settings.batch_max_events, acknowledge=False):
                try:
                    of_partition = {event.message.partition: event for event in events}
                    read = reader(pipeline.table, of_partition, pipeline.written)
                    effects = compute(events, read)
                    pipeline.launch(events, effects)
                    await pipeline.room()
                except Exception as error:  # any failure must stop the worker, never skip
                    unacked = pipeline.oldest_events() or events
                    stop_unprocessed(unacked[0].message, error, settings)
        finally:
            lander.cancel()

    async def transactional(
        stream: Stream,
        table: Any,
        compute: Compute,
        encode: Callable[[Any], bytes],
        done: Callable[[Any, float], None],
    ) -> None:
        async for events in stream.batches(settings.batch_max_events):
            try:
                await step(events, table, compute, encode, done)
            except Exception as error:  # any failure must stop the worker, never skip
                stop_unprocessed(events[0].message, error, settings)

    @app.agent(inputs, name="score")
    async def score(stream: faust.StreamT[Any]) -> None:
        if pipeline is not None:
            await pipelined(cast(Stream, stream), pipeline, score_leads)
        else:
            await transactional(cast(Stream, stream), leads, score_leads, encode_lead, finish)

    @app.agent(account_updates, name="accounts")
    async def roll_up(stream: faust.StreamT[Any]) -> None:
        if account_pipeline is not None:
            await pipelined(cast(Stream, stream), account_pipeline, score_accounts)
        else:
            await transactional(
                cast(Stream, stream), accounts, score_accounts, encode_entry, finish_accounts
            )

    ticker = Ticker(settings)
    if settings.web_enabled:
        install_web(
            app,
            leads,
            ChangeReader(settings),
            rules,
            settings,
            clock,
            ticker.broker_problem,
            partitions=partitions,
            in_flight=pipeline.written if pipeline is not None else None,
            ranks=ranks,
            accounts=accounts if rules.accounts.enabled else None,
            accounts_in_flight=account_pipeline.written if account_pipeline is not None else None,
        )

    stage_names = [stage.name for stage in rules.stages]
    account_stage_names = [stage.name for stage in rules.accounts.stages]

    def worker_view() -> WorkerView | None:
        """The worker's state for a scrape (see leadscore.metrics.WorkerCollector)."""
        if not app.started:
            return None
        owned = owned_partitions(app, settings.events_topic)
        recovery = app.tables.recovery  # type: ignore[attr-defined]  # Faust's TableManagerT does not declare its recovery
        return WorkerView(
            ready=not_ready(app, settings, ticker.broker_problem) is None,
            stages=timers.census(owned, stage_names),
            partitions=len(owned),
            lag=consumer_lag(app, settings.events_topic),
            recovery_remaining=recovery.active_remaining_total() if recovery.in_recovery else 0,
            rebalances=app.rebalancing_count,
            account_stages=account_timers.census(owned, account_stage_names),
            top_accounts=engagement.top(owned, TOP_ACCOUNTS, clock()),
        )

    watch_worker(worker_view)

    last_committed: dict[Any, int | None] = {}
    head_holes: dict[Any, tuple[int, int]] = {}

    @app.timer(30.0)  # type: ignore[untyped-decorator]  # Faust's decorator is untyped
    async def report_stuck_commits() -> None:
        """Log partitions whose records processed 30 s ago are still uncommitted."""
        stuck = stuck_commits(app.consumer, last_committed)
        if stuck:
            log.warning("records processed 30 s ago are still uncommitted: %s", "; ".join(stuck))
        for line in await heal_head_holes(cast(Consumer, app.consumer), head_holes):
            log.warning("%s", line)
        await cast(Consumer, app.consumer).catch_up_by_position()

    @app.timer(settings.timer_interval_seconds)  # type: ignore[untyped-decorator]  # Faust's decorator is untyped
    async def send_ticks() -> None:
        """Ask every partition this worker owns to visit its due leads (one record each)."""
        now = clock()
        ticker.send(owned_partitions(app, settings.ticks_topic), now)
        if rules.accounts.enabled:
            ticker.send(
                owned_partitions(app, settings.account_updates_topic),
                now,
                settings.account_updates_topic,
                [(TICK_HEADER, b"1")],
            )

    return app
