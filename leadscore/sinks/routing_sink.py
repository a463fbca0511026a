"""``leadscore sink routing``: assign an owner to the actions the routing file wants.

The sink runner (runner.py) consumes leadscore.actions in the group
``<app id>-routing``. For each action, in consumption order,
``routing_rules.decide`` gives the Assignment from the routing state, a
RocksDB store in ``LEADSCORE_SINK_DATA_DIR/routing``; the state writes (memo,
account owner, round-robin cursor, the day's load) go in one atomic batch
before the Assignment is produced to leadscore.assignments. An action is done
once its Assignment is acknowledged, and the runner commits a partition only
up to its first action not yet done.

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

import time
from collections.abc import Iterator
from typing import Any, cast

import orjson
from confluent_kafka import Message, TopicPartition
from rocksdict import Options, Rdict, WriteBatch

from leadscore.codecs.outputs import encoder
from leadscore.codecs.read_back import decode_output
from leadscore.config import Settings
from leadscore.logs import redact
from leadscore.metrics import SINK_ASSIGNMENTS, SINK_LATENCY
from leadscore.scoring.rules import MS_PER_DAY
from leadscore.sinks.files import wants_accounts
from leadscore.sinks.kafka import records, sink_consumer
from leadscore.sinks.routing_rules import (
    RoutingConfig,
    absorb,
    contact_key,
    contact_prefix,
    day_of,
    decide,
    memo_key,
    time_key,
)
from leadscore.sinks.runner import SinkRunner, log

SINK = "routing"
REBUILD_BATCH = 500
PRUNE_EVERY_S = 3600.0


class RoutingSink:
    """Assigns an owner to each action the routing file wants (a runner.SinkHandler)."""

    name = SINK
    required: tuple[str, ...] = ("action_id", "contact_id", "kind", "name", "score", "emitted_at")

    def __init__(self, settings: Settings, config: RoutingConfig) -> None:
        self.settings = settings
        self.config = config
        path = settings.sink_data_dir / "routing"
        path.mkdir(parents=True, exist_ok=True)
        self.store = Rdict(str(path), options=Options(raw_mode=True))
        self.encode = encoder("Assignment", settings.output_format)
        self.accounts = wants_accounts(config.actions)
        self.pruned_at = time.monotonic()

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
        reader = sink_consumer(self.settings, f"{self.settings.app_id}-{SINK}-rebuild")
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
            for message, partition, offset in records(
                reader.consume(REBUILD_BATCH, 1.0), "rebuild"
            ):
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

    def purge(self, contact_id: str) -> int:
        """Delete every remembered assignment of a contact (memo and its indexes); how many."""
        prefix = contact_prefix(contact_id)
        batch = WriteBatch(raw_mode=True)
        purged = 0
        for key in cast(Iterator[bytes], self.store.keys(from_key=prefix)):  # raw mode
            if not key.startswith(prefix):
                break
            action_id = key[len(prefix) :].decode()
            memo = self.store.get(memo_key(action_id))
            if memo is not None:
                batch.delete(time_key(orjson.loads(memo)["assigned_at"], action_id))
                batch.delete(memo_key(action_id))
            batch.delete(key)
            purged += 1
        self.store.write(batch)
        return purged

    def prune(self, now_ms: int) -> int:
        """Forget assignments older than the dedupe horizon, and past days' loads."""
        cutoff = now_ms - int(self.settings.sink_dedupe_days * MS_PER_DAY)
        doomed: list[bytes] = []
        for key in cast(Iterator[bytes], self.store.keys(from_key=b"t:")):  # raw mode
            if not key.startswith(b"t:") or int(key[2:15]) >= cutoff:
                break
            memo = self.store.get(b"m:" + key[16:])
            if memo is not None:
                doomed.append(contact_key(orjson.loads(memo)["contact_id"], key[16:].decode()))
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

    # -- the handler --------------------------------------------------------------------------

    async def open(self, runner: SinkRunner) -> None:
        if self._empty():
            log.info("routing: empty state; rebuilt from %s records", self.rebuild())
        self.prune(int(time.time() * 1000))
        log.info("routing: %s team(s)", len(self.config.teams))

    async def handle(self, runner: SinkRunner, action: dict[str, Any], message: Message) -> None:
        """Decide and write the state now (in consumption order: nothing here awaits
        before the write), then produce the Assignment and wait for the broker. An
        ``erased`` action purges what the state holds of the contact instead."""
        if action["kind"] == "erased":
            purged = self.purge(action["contact_id"])
            log.info("routing: erased contact: %s assignment(s) purged", purged)
            return
        decision = decide(action, self.config, self.store)
        if decision is None:
            return
        if decision.writes:
            self._apply(decision.writes)
        assignment = decision.assignment
        log.debug("routing: %s -> team %s", redact(assignment["contact_id"]), assignment["team"])
        await runner.produce(
            self.settings.assignments_topic,
            (assignment["contact_id"] or assignment["account_id"] or "").encode() or None,
            self.encode(assignment),
        )
        strategy = "replayed" if decision.replayed else assignment["strategy"]
        SINK_ASSIGNMENTS.labels(assignment["team"], strategy).inc()
        latency = SINK_LATENCY.labels(SINK, self.settings.assignments_topic)
        latency.observe(max(0.0, time.time() - action["emitted_at"] / 1000))

    def tick(self) -> None:
        if time.monotonic() - self.pruned_at > PRUNE_EVERY_S:
            self.prune(int(time.time() * 1000))
            self.pruned_at = time.monotonic()

    async def close(self) -> None:
        self.store.close()
