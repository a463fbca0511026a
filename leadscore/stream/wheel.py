"""A timer wheel over a key-value table: which leads are due for a decay re-assessment.

Time is cut into slots of ``slot_ms``. A lead whose score will cross a stage
boundary or a re-arm level at time T is listed under slot T // slot_ms. Per
partition, a cursor remembers the first slot not yet visited. A tick visits the
slots from the cursor up to (not including) the current one: one point lookup
per elapsed slot plus one entry per due lead, never a scan of all leads.

Keys carry the partition (``p3:s:0000173...``) so the wheels of different
partitions never share a key, whichever store or changelog partition holds them.
The store is anything with ``get``, item assignment and deletion: a Faust table
in the worker, a dict in tests. This module knows nothing of Faust or Kafka.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass

import orjson

# A worker that was down long could owe many slots; a tick walks at most this many
# and the next tick goes on from there.
MAX_SLOTS_PER_TICK = 10_000


@dataclass(frozen=True, slots=True)
class DueSlot:
    slot: int
    contacts: list[str]


class TimerWheel:
    """The due-time index of one partition."""

    def __init__(self, store: MutableMapping[bytes, bytes], partition: int, slot_ms: int) -> None:
        if slot_ms <= 0:
            raise ValueError("slot_ms must be positive")
        self.store = store
        self.partition = partition
        self.slot_ms = slot_ms
        self._cursor_key = f"p{partition}:cursor".encode()

    def _slot_key(self, slot: int) -> bytes:
        return f"p{self.partition}:s:{slot:015d}".encode()

    def cursor(self, now_ms: int) -> int:
        """The first slot not yet visited (the current slot when the wheel is new)."""
        raw = self.store.get(self._cursor_key)
        if raw is None:
            start = now_ms // self.slot_ms
            self.store[self._cursor_key] = str(start).encode()
            return start
        return int(raw)

    def reschedule(
        self, contact: str, scheduled_ms: int | None, due_ms: int | None, now_ms: int
    ) -> int | None:
        """Move ``contact`` from the slot of ``scheduled_ms`` to that of ``due_ms``.

        Returns the time it is now scheduled for: ``due_ms``, or the start of the
        first unvisited slot when ``due_ms`` is already behind the cursor (it is
        then visited by the next tick). None when it is no longer scheduled.
        """
        new_slot: int | None = None
        if due_ms is not None:
            new_slot = max(due_ms // self.slot_ms, self.cursor(now_ms))
            due_ms = max(due_ms, new_slot * self.slot_ms)
        old_slot = None if scheduled_ms is None else scheduled_ms // self.slot_ms
        if old_slot != new_slot:
            if old_slot is not None:
                self._remove(old_slot, contact)
            if new_slot is not None:
                self._add(new_slot, contact)
        return due_ms

    def take_due(self, now_ms: int) -> Iterator[DueSlot]:
        """Every slot that ended at or before ``now_ms``; each is removed once handled.

        A slot is deleted, and the cursor moved past it, only after the caller
        has handled it (when iteration resumes). A crash in between leaves the
        slot in place, so the tick that is processed again finds it; leads the
        caller already rescheduled then point elsewhere and are skipped. A caller
        that reschedules a lead while iterating puts it at or after the current
        slot, which is ahead of every slot this tick visits. An empty slot costs
        one lookup and no write.
        """
        end = now_ms // self.slot_ms
        start = slot = self.cursor(now_ms)
        stop = min(end, start + MAX_SLOTS_PER_TICK)
        while slot < stop:
            key = self._slot_key(slot)
            raw = self.store.get(key)
            slot += 1
            if raw is None:
                continue
            yield DueSlot(slot - 1, orjson.loads(raw))
            del self.store[key]
            self.store[self._cursor_key] = str(slot).encode()
        if stop > start:
            self.store[self._cursor_key] = str(stop).encode()

    def _add(self, slot: int, contact: str) -> None:
        key = self._slot_key(slot)
        raw = self.store.get(key)
        contacts: list[str] = orjson.loads(raw) if raw is not None else []
        if contact not in contacts:
            contacts.append(contact)
            self.store[key] = orjson.dumps(contacts)

    def _remove(self, slot: int, contact: str) -> None:
        key = self._slot_key(slot)
        raw = self.store.get(key)
        if raw is None:
            return
        contacts: list[str] = orjson.loads(raw)
        if contact in contacts:
            contacts.remove(contact)
            if contacts:
                self.store[key] = orjson.dumps(contacts)
            else:
                del self.store[key]
