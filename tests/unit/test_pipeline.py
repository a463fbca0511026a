"""The at_least_once pipeline (leadscore.stream.pipeline): batches land in order, at any depth.

The sender and the table here are in-process stand-ins with the interface the
pipeline uses: a sender numbers each partition's records in the order they are
produced, as a broker does, and answers after a random number of loop turns;
the table keeps what is applied. The integration and fault tiers run the
same pipeline against a real broker and RocksDB.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from leadscore.codecs.leads import decode_lead
from leadscore.step.batch import Effects, Input, process
from leadscore.step.wheel import Timers
from leadscore.stream.partitioning import key_partition
from leadscore.stream.pipeline import Pipeline
from leadscore.stream.sender import Record
from tests.unit.test_step import (
    ENCODERS,
    LIMITS,
    NOW,
    PARTITIONS,
    RULES,
    SLOT_MS,
    build,
    records,
    split,
)

HISTORY = 3


class Broker:
    """Numbers records per (topic, partition) in the order they are produced."""

    def __init__(self, seed: int) -> None:
        self.next: Counter[tuple[str, int]] = Counter()
        self.rng = random.Random(seed)
        self.log: list[tuple[str, bytes | None]] = []  # (topic, key) in produce order

    async def send_all(self, records: Sequence[Record]) -> list[tuple[int, int]]:
        landed = []
        for topic, partition, key, _value, _headers in records:
            home = partition if partition is not None else key_partition(key or b"", PARTITIONS)
            landed.append((home, self.next[(topic, home)]))
            self.next[(topic, home)] += 1
            self.log.append((topic, key))
        for _ in range(self.rng.randint(0, 4)):  # the acknowledgement takes a while
            await asyncio.sleep(0)
        return landed

    deliver = send_all


class Table:
    def __init__(self) -> None:
        self.changelog_topic = SimpleNamespace(get_topic_name=lambda: "leads-changelog")
        self.data: dict[bytes, bytes] = {}
        self.offsets: dict[int, int] = {}

    def apply_delivered(self, records: Iterable[tuple[int, int, bytes, bytes | None]]) -> None:
        for partition, offset, key, value in records:
            assert value is not None
            self.data[key] = value
            self.offsets[partition] = offset


async def drive(batches: list[list[Input]], depth: int, seed: int) -> tuple[Table, Broker, list]:
    broker, table = Broker(seed), Table()
    acked: list[int] = []
    outputs: list[Any] = []

    async def acknowledge(event: Input) -> None:
        acked.append(event.offset)

    def finish(effects: Effects, _started: float) -> None:
        outputs.extend(effects.outputs)

    pipeline = Pipeline(
        sender=broker,  # type: ignore[arg-type]  # the stand-in above
        table=table,
        topic_names={
            "actions": "a",
            "score_changes": "c",
            "lead_state": "s",
            "dlq": "d",
            "handoff": "h",
        },
        history_size=HISTORY,
        finish=finish,
        depth=depth,
    )
    lander = asyncio.ensure_future(pipeline.land_all(acknowledge))
    timers = Timers(SLOT_MS)

    def read(_partition: int, key: bytes) -> Any:
        written, record = pipeline.written(key)
        return record if written else table.data.get(key)

    for batch in batches:
        effects = process(batch, read, timers, RULES, NOW, LIMITS, ENCODERS)
        pipeline.launch(batch, effects)
        await pipeline.room()
    while pipeline.flights:
        await asyncio.shield(pipeline.flights[0].landed)
    lander.cancel()
    assert acked == [r.offset for batch in batches for r in batch]  # every event, in order
    return table, broker, outputs


@settings(max_examples=120, deadline=None)
@given(
    records,
    st.lists(st.integers(min_value=0, max_value=40), max_size=8),
    st.integers(min_value=2, max_value=5),
    st.integers(min_value=0, max_value=1000),
)
def test_any_depth_lands_the_same_leads_and_histories_as_one_batch_at_a_time(
    spec: list[tuple[Any, ...]], cuts: list[int], depth: int, seed: int
) -> None:
    batches = split(build(spec), cuts)
    one, one_broker, one_outputs = asyncio.run(drive(batches, depth=1, seed=seed))
    deep, deep_broker, deep_outputs = asyncio.run(drive(batches, depth=depth, seed=seed))
    # Byte for byte: scores, dedupe ids and each lead's score-change offsets (its history).
    assert deep.data == one.data
    assert deep_outputs == one_outputs
    assert deep_broker.next == one_broker.next


def test_a_lead_s_history_names_the_offsets_of_its_score_changes() -> None:
    spec = [("event", "ada", kind, -1000 * i) for i, kind in enumerate(["signup", "download"] * 3)]
    batches = [[r] for r in build(spec)]
    table, _broker, outputs = asyncio.run(drive(batches, depth=4, seed=1))
    record = decode_lead(table.data[b"ada"], b"ada")
    changes = [o for o in outputs if o.destination == "score_changes"]
    assert len(changes) == 6
    assert record.change_partition == key_partition(b"ada", PARTITIONS)
    assert record.change_offsets == [3, 4, 5]  # the last HISTORY of offsets 0..5


def test_a_changelog_record_is_produced_only_after_its_batch_s_outputs() -> None:
    spec = [("event", c, "signup", -1000) for c in ["ada", "bob", "cy", "dee"]]
    batches = [[r] for r in build(spec)]
    _table, broker, _outputs = asyncio.run(drive(batches, depth=4, seed=7))
    seen: set[bytes | None] = set()
    for topic, key in broker.log:
        if topic == "leads-changelog":
            assert key in seen, "a changelog record before its lead's outputs"
        else:
            seen.add(key)
