"""A timer wheel in memory: which leads of a partition are due for a decay re-assessment.

Time is cut into slots of ``slot_ms``. A lead whose score will cross a stage
boundary or a re-arm level at time T is listed under slot T // slot_ms. A cursor
is the first slot not yet visited. A tick visits the slots from the cursor up to
(not including) the current one: one dict lookup per elapsed slot plus one entry
per due lead, never a scan of all leads.

The wheel is derived state, never written anywhere: every lead record carries
its own due time (``LeadRecord.due_ms``), and ``Timers.rebuild`` lists every lead
of a partition again from the lead records when the worker takes the partition
(after its tables are recovered). A crash therefore loses nothing: the next
owner rebuilds the wheel, and a lead due while no worker owned the partition is
put in the first slot the new wheel visits. Adding a lead costs one set insert
whatever the slot holds (a wheel kept as one changelogged record per slot
rewrote the whole slot per lead: 10k new leads in one second wrote 1.5 GB, and
a slot over 1 MB stopped the worker).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

# A worker that was down long could owe many slots; a tick walks at most this many
# and the next tick goes on from there.
MAX_SLOTS_PER_TICK = 10_000


@dataclass(frozen=True, slots=True)
class DueSlot:
    slot: int
    contacts: list[str]


class TimerWheel:
    """The due-time index of one partition."""

    def __init__(self, partition: int, slot_ms: int, now_ms: int) -> None:
        if slot_ms <= 0:
            raise ValueError("slot_ms must be positive")
        self.partition = partition
        self.slot_ms = slot_ms
        self.cursor = now_ms // slot_ms  # the first slot not yet visited
        self.slots: dict[int, set[str]] = {}

    def reschedule(self, contact: str, scheduled_ms: int | None, due_ms: int | None) -> int | None:
        """Move ``contact`` from the slot of ``scheduled_ms`` to that of ``due_ms``.

        Returns the time it is now scheduled for: ``due_ms``, or the start of the
        first unvisited slot when ``due_ms`` is already behind the cursor (it is
        then visited by the next tick). None when it is no longer scheduled.
        """
        new_slot: int | None = None
        if due_ms is not None:
            new_slot = max(due_ms // self.slot_ms, self.cursor)
            due_ms = max(due_ms, new_slot * self.slot_ms)
        old_slot = None if scheduled_ms is None else scheduled_ms // self.slot_ms
        if old_slot != new_slot:
            if old_slot is not None:
                self._remove(old_slot, contact)
            if new_slot is not None:
                self.slots.setdefault(new_slot, set()).add(contact)
        return due_ms

    def take_due(self, now_ms: int) -> Iterator[DueSlot]:
        """Every slot that ended at or before ``now_ms``, each taken out once handed over.

        A caller that reschedules a lead while iterating puts it at or after the
        current slot, which is ahead of every slot this tick visits.
        """
        end = now_ms // self.slot_ms
        stop = min(end, self.cursor + MAX_SLOTS_PER_TICK)
        while self.cursor < stop:
            slot = self.cursor
            self.cursor += 1
            contacts = self.slots.pop(slot, None)
            if contacts:
                yield DueSlot(slot, sorted(contacts))

    def __len__(self) -> int:
        return sum(len(contacts) for contacts in self.slots.values())

    def _remove(self, slot: int, contact: str) -> None:
        contacts = self.slots.get(slot)
        if contacts is not None:
            contacts.discard(contact)
            if not contacts:
                del self.slots[slot]


class Scheduled(Protocol):
    due_ms: int | None


S = TypeVar("S", bound=Scheduled)


def due_now(
    wheel: TimerWheel, now_ms: int, find: Callable[[str], S | None]
) -> Iterator[tuple[str, S]]:
    """The records whose time has come: each name the wheel hands out (taken off its
    slot) with its record, unless the record is gone or was rescheduled since (its new
    slot holds it)."""
    for due in wheel.take_due(now_ms):
        for name in due.contacts:
            record = find(name)
            if record is None or record.due_ms is None:
                continue
            if record.due_ms // wheel.slot_ms != due.slot:
                continue  # rescheduled since; its current slot holds it
            yield name, record


class Timers:
    """The wheels and stage counts of the partitions a worker owns, derived from lead records."""

    def __init__(self, slot_ms: int) -> None:
        self.slot_ms = slot_ms
        self.wheels: dict[int, TimerWheel] = {}
        self.stages: dict[int, Counter[str]] = {}

    def wheel(self, partition: int, now_ms: int) -> TimerWheel:
        wheel = self.wheels.get(partition)
        if wheel is None:
            wheel = self.wheels[partition] = TimerWheel(partition, self.slot_ms, now_ms)
        return wheel

    def rebuild(
        self, partition: int, leads: Iterable[tuple[str, int | None, str]], now_ms: int
    ) -> None:
        """Index ``partition`` again from its leads: (contact id, due time, stage) each."""
        wheel = self.wheels[partition] = TimerWheel(partition, self.slot_ms, now_ms)
        stages: Counter[str] = Counter()
        for contact, due_ms, stage in leads:
            wheel.reschedule(contact, None, due_ms)
            if stage:  # an alias stub's stage is empty: not a lead of its own
                stages[stage] += 1
        self.stages[partition] = stages

    def keep_only(self, partitions: Iterable[int]) -> None:
        """Forget every partition not in ``partitions`` (revoked ones)."""
        keep = set(partitions)
        for held in (self.wheels, self.stages):
            for partition in [p for p in held if p not in keep]:
                del held[partition]

    def move(self, partition: int, old: str | None, new: str | None) -> None:
        """One lead of ``partition`` went from stage ``old`` (None: new lead) to ``new``
        (None: gone). An alias stub's empty stage counts as no lead."""
        old, new = old or None, new or None
        if old == new:
            return
        counts = self.stages.setdefault(partition, Counter())
        if old is not None:
            counts[old] -= 1
            if counts[old] <= 0:
                del counts[old]
        if new is not None:
            counts[new] += 1

    def census(self, partitions: Iterable[int], stages: Iterable[str]) -> dict[str, int]:
        """Leads by stage over ``partitions``; every one of ``stages`` is present (0 if none)."""
        counts = dict.fromkeys(stages, 0)
        for partition in partitions:
            for stage, leads in self.stages.get(partition, Counter()).items():
                counts[stage] = counts.get(stage, 0) + leads
        return counts
