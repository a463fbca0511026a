"""at_least_once: batches in flight, each landed in order once Kafka has its records.

The order that keeps the guarantees (no event lost, none counted twice),
for each batch, in batch order:

1. its outputs (actions, score changes, lead state, dead letters) are sent
   as soon as it is processed (``launch``);
2. once the broker has acknowledged all of them, the offsets of its score
   changes are added to its lead records (each lead's history,
   ``stream.history``), and to the records later batches derived from them;
3. its lead records are sent to the changelog, and once the broker has
   acknowledged those, applied to the local store with the changelog offsets
   (``faust_ext.tables.Table.apply_delivered``);
4. its events are acknowledged, so Faust may commit their offsets.

A crash at any point leaves the batch's events uncommitted and the store
without the batch (a store is trusted only after a clean stop anyway,
``stream.state_dir``): the events are processed again, found applied if their
changelog records landed, and their outputs sent again otherwise.

The scoring never waits for a round trip: while up to ``depth`` batches are in
flight, the next batch is processed, reading each lead from the newest batch
in flight that wrote it (``lead``), else from the table; the query API reads
leads the same way, so it never answers older state than the lead-state topic
shows (a lead's history may lack its newest change until its batch lands).
Only ``land_all``, one task, moves batches through steps 2 to 4, one at a
time, in order.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from leadscore.codecs.leads import encode_lead
from leadscore.stream.history import keep_change
from leadscore.stream.sender import DirectSender

#: Batches processed but not landed, at most, before the scoring waits.
DEPTH = 4


@dataclass
class Flight:
    events: list[Any]
    effects: Any  # Effects, or the account step's AccountEffects: outputs and writes
    delivered: asyncio.Future[list[tuple[int, int]]]
    started: float
    landed: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Pipeline:
    def __init__(
        self,
        *,
        sender: DirectSender,
        table: Any,  # faust_ext.tables.Table
        topic_names: dict[str, str],
        history_size: int,
        finish: Callable[[Any, float], None],
        depth: int = DEPTH,
        encode: Callable[[Any], bytes] = encode_lead,
    ) -> None:
        """``encode``: a written value's changelog bytes (the leads table's by default; the
        accounts table passes its own, with ``history_size`` 0)."""
        self.sender = sender
        self.encode = encode
        self.table = table
        self.changelog = table.changelog_topic.get_topic_name()
        self.topic_names = topic_names
        self.history_size = history_size
        self.finish = finish
        self.depth = depth
        self.flights: deque[Flight] = deque()
        self._arrived = asyncio.Event()

    def written(self, key: bytes) -> tuple[bool, Any]:
        """Whether a batch in flight wrote ``key``, and what the newest one left (None:
        deleted)."""
        for flight in reversed(self.flights):
            hit = flight.effects.writes.get(key)
            if hit is not None:
                return True, hit[1]
        return False, None

    def oldest_events(self) -> list[Any]:
        """The events of the oldest batch not landed (empty if none)."""
        return self.flights[0].events if self.flights else []

    def launch(self, events: list[Any], effects: Any) -> None:
        """Send a processed batch's outputs; it lands once they are delivered."""
        names = self.topic_names
        records = [
            (names[o.destination], o.partition, o.key, o.value, list(o.headers) or None)
            for o in effects.outputs
        ]
        delivered = asyncio.ensure_future(self.sender.send_all(records))
        self.flights.append(Flight(events, effects, delivered, time.perf_counter()))
        self._arrived.set()

    async def room(self) -> None:
        """Until fewer than ``depth`` batches are in flight."""
        while len(self.flights) >= self.depth:
            await asyncio.shield(self.flights[0].landed)

    async def land_all(self, acknowledge: Callable[[Any], Awaitable[Any]]) -> None:
        """Land batches in order, for as long as the agent runs (its errors propagate)."""
        while True:
            if not self.flights:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            await self._land(self.flights[0], acknowledge)

    async def _land(self, flight: Flight, acknowledge: Callable[[Any], Awaitable[Any]]) -> None:
        landed = await flight.delivered
        effects = flight.effects
        if self.history_size:
            later = list(self.flights)[1:]
            for output, (partition, offset) in zip(effects.outputs, landed, strict=True):
                if output.destination != "score_changes" or output.key is None:
                    continue
                written = effects.writes.get(output.key)
                if written is not None and written[1] is not None:
                    keep_change(written[1], partition, offset, self.history_size)
                for other in later:  # derived from this record before its change landed
                    hit = other.effects.writes.get(output.key)
                    if hit is not None and hit[1] is not None:
                        keep_change(hit[1], partition, offset, self.history_size)
        writes = [
            (partition, key, None if record is None else self.encode(record))
            for key, (partition, record) in effects.writes.items()
        ]
        offsets = await self.sender.deliver(
            [(self.changelog, partition, key, value, None) for partition, key, value in writes]
        )
        self.table.apply_delivered(
            (partition, offset, key, value)
            for (partition, key, value), (_, offset) in zip(writes, offsets, strict=True)
        )
        for event in flight.events:
            await acknowledge(event)
        # Only now: until its events are acknowledged it is the oldest batch not landed
        # (oldest_events); reads find the same records in it as in the table.
        self.flights.popleft()
        flight.landed.set_result(None)
        self.finish(effects, flight.started)
