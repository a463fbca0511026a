"""``leadscore sink routing``: assign an owner to the actions the routing file wants.

A confluent-kafka consumer in its own group (``<app id>-routing``) reads
leadscore.actions in batches. For each action ``routing.decide`` gives the
Assignment from the routing state, a RocksDB store in
``LEADSCORE_SINK_DATA_DIR/routing``; the state writes (memo, account owner,
round-robin cursor, the day's load) go in one atomic batch before the
Assignment is produced to leadscore.assignments. The batch's offsets are
committed once every Assignment of the batch is acknowledged.

After a crash, the actions since the last commit are consumed again: those
already decided are found in the memo and give the same Assignment, produced
again (consumers of the topic drop repeated ``assignment_id``s); the others
are decided as they would have been. When the store is lost, it is rebuilt
from the assignments topic before consuming (stickiness and memo as far back
as the topic's retention).

Routing state is global (accounts span partitions), so run one routing sink
per deployment; a second instance would share the partitions with its own,
separate state.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Iterator
from types import FrameType
from typing import cast

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import start_http_server
from rocksdict import Options, Rdict, WriteBatch

from leadscore.codecs.outputs import encoder
from leadscore.codecs.read_back import decode_output
from leadscore.config import Settings
from leadscore.errors import InvalidAction
from leadscore.logs import redact
from leadscore.metrics import SINK_ASSIGNMENTS, SINK_DEAD_LETTERS, SINK_LATENCY
from leadscore.scoring.rules import MS_PER_DAY
from leadscore.sinks.kafka import (
    dead_letter_headers,
    decode_action,
    records,
    sink_consumer,
    sink_producer,
)
from leadscore.sinks.routing_rules import RoutingConfig, absorb, day_of, decide, memo_key

log = logging.getLogger("leadscore.sink")

SINK = "routing"
BATCH = 500
REQUIRED = ("action_id", "contact_id", "kind", "name", "score", "emitted_at")


class RoutingSink:
    def __init__(self, settings: Settings, config: RoutingConfig) -> None:
        self.settings = settings
        self.config = config
        self.group = f"{settings.app_id}-routing"
        path = settings.sink_data_dir / "routing"
        path.mkdir(parents=True, exist_ok=True)
        self.store = Rdict(str(path), options=Options(raw_mode=True))
        self.encode = encoder("Assignment", settings.output_format)
        self.stopping = False
        self.failed: list[str] = []
        self.consumer = sink_consumer(settings, self.group, lag_of=SINK)
        self.producer = sink_producer(settings)

    # -- state ---------------------------------------------------------------------------------

    def _apply(self, writes: dict[bytes, bytes]) -> None:
        batch = WriteBatch(raw_mode=True)
        for key, value in writes.items():
            batch.put(key, value)
        self.store.write(batch)

    def _empty(self) -> bool:
        return next(iter(self.store.keys()), None) is None

    def rebuild(self) -> int:
        """Fill an empty store from the assignments topic; how many records it read."""
        reader = sink_consumer(self.settings, f"{self.group}-rebuild")
        topic = self.settings.assignments_topic
        metadata = reader.list_topics(topic, timeout=10)
        ends: dict[int, int] = {}
        starts = []
        for partition in metadata.topics[topic].partitions:
            low, high = reader.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high > low:
                ends[partition] = high
                starts.append(TopicPartition(topic, partition, low))
        read = 0
        reader.assign(starts)
        while ends:
            for message, partition, offset in records(reader.consume(BATCH, 1.0), "rebuild"):
                if partition in ends and offset >= ends[partition] - 1:
                    del ends[partition]
                assignment = decode_output(message.value())
                if not isinstance(assignment, dict) or "assignment_id" not in assignment:
                    continue
                if self.store.get(memo_key(assignment["action_id"])) is None:  # not a repeat
                    self._apply(absorb(assignment, self.store))
                read += 1
            # Transaction markers can end a partition: stop where the position passed the end.
            for tp in reader.position([TopicPartition(topic, p) for p in list(ends)]):
                if tp.offset >= ends[tp.partition]:
                    del ends[tp.partition]
        reader.close()
        return read

    def prune(self, now_ms: int) -> int:
        """Forget assignments older than the dedupe horizon, and past days' loads."""
        cutoff = now_ms - int(self.settings.sink_dedupe_days * MS_PER_DAY)
        doomed: list[bytes] = []
        for key in cast(Iterator[bytes], self.store.keys(from_key=b"t:")):  # raw mode
            if not key.startswith(b"t:") or int(key[2:15]) >= cutoff:
                break
            doomed += [key, b"m:" + key[16:]]
        oldest_day = day_of(now_ms - 2 * MS_PER_DAY)
        for key in cast(Iterator[bytes], self.store.keys(from_key=b"l:")):  # raw mode
            if not key.startswith(b"l:") or key[2:12].decode() >= oldest_day:
                break
            doomed.append(key)
        batch = WriteBatch(raw_mode=True)
        for key in doomed:
            batch.delete(key)
        self.store.write(batch)
        return len(doomed)

    # -- the loop ------------------------------------------------------------------------------

    def _dead_letter(self, message: Message, error: InvalidAction) -> None:
        reason = error.reason
        headers = dead_letter_headers(SINK, reason, message, **{"error.message": str(error)})
        self.producer.produce(
            self.settings.sink_dlq_topic,
            key=message.key(),
            value=message.value(),
            headers=headers,
            on_delivery=self._acked,
        )
        SINK_DEAD_LETTERS.labels(SINK, reason).inc()

    def _acked(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self.failed.append(str(err))

    def _handle(self, message: Message) -> int | None:
        """Route one action; its emitted_at when an assignment was produced."""
        try:
            action = decode_action(message.value(), REQUIRED)
        except InvalidAction as error:
            self._dead_letter(message, error)
            return None
        decision = decide(action, self.config, self.store)
        if decision is None:
            return None
        if decision.writes:
            self._apply(decision.writes)
        assignment = decision.assignment
        self.producer.produce(
            self.settings.assignments_topic,
            key=assignment["contact_id"].encode(),
            value=self.encode(assignment),
            on_delivery=self._acked,
        )
        strategy = "replayed" if decision.replayed else assignment["strategy"]
        SINK_ASSIGNMENTS.labels(assignment["team"], strategy).inc()
        log.debug("routing: %s -> team %s", redact(assignment["contact_id"]), assignment["team"])
        emitted: int = action["emitted_at"]
        return emitted

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        if self.settings.sink_metrics_port:
            start_http_server(self.settings.sink_metrics_port)
        if self._empty():
            log.info("routing: empty state; rebuilt from %s records", self.rebuild())
        self.prune(int(time.time() * 1000))
        self.consumer.subscribe(
            [self.settings.actions_topic],
            on_assign=lambda _c, ps: log.info(
                "routing: assigned partitions %s", sorted(tp.partition for tp in ps)
            ),
        )
        log.info("routing: group %s, %s team(s)", self.group, len(self.config.teams))
        pruned_at = time.monotonic()
        while not self.stopping:
            messages = self.consumer.consume(num_messages=BATCH, timeout=0.5)
            ends: dict[int, int] = {}
            emitted = []
            for message, partition, offset in records(messages, SINK):
                emitted_at = self._handle(message)
                if emitted_at is not None:
                    emitted.append(emitted_at)
                ends[partition] = offset + 1
            if not ends:
                continue
            left = self.producer.flush(30)
            if left or self.failed:
                log.error("routing: stopping: assignments not acknowledged: %s", self.failed[:3])
                return 1  # nothing of this batch is committed; it is redone on restart
            acked = time.time()
            latency = SINK_LATENCY.labels(SINK, self.settings.assignments_topic)
            for emitted_at in emitted:
                latency.observe(max(0.0, acked - emitted_at / 1000))
            try:
                self.consumer.commit(
                    offsets=[
                        TopicPartition(self.settings.actions_topic, p, o) for p, o in ends.items()
                    ],
                    asynchronous=False,
                )
            except KafkaException as exc:  # e.g. partitions moved away in a rebalance
                log.warning("routing: commit failed, the batch will be consumed again: %s", exc)
            if time.monotonic() - pruned_at > 3600:
                self.prune(int(time.time() * 1000))
                pruned_at = time.monotonic()
        self.consumer.close()
        self.producer.flush(10)
        self.store.close()
        log.info("routing: stopped")
        return 0
