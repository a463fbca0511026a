"""The timer wheel visits due leads only: work per tick follows the due leads, not all leads."""

from __future__ import annotations

import random
from collections.abc import Iterator, MutableMapping

import orjson

from leadscore.stream.wheel import TimerWheel

SLOT = 10_000
NOW = 1_762_000_000_000


class CountingStore(MutableMapping[bytes, bytes]):
    """A dict that counts reads and writes."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.reads = 0
        self.writes = 0

    def __getitem__(self, key: bytes) -> bytes:
        self.reads += 1
        return self.data[key]

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        self.reads += 1
        return self.data.get(key, default)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.writes += 1
        self.data[key] = value

    def __delitem__(self, key: bytes) -> None:
        self.writes += 1
        del self.data[key]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def test_a_tick_over_100k_leads_with_1_percent_due_touches_only_those() -> None:
    rng = random.Random(7)
    store = CountingStore()
    wheel = TimerWheel(store, partition=0, slot_ms=SLOT)
    day = 86_400_000
    due = {f"c-{i}": NOW + rng.randrange(day) for i in range(100_000)}
    for contact, at in due.items():
        wheel.reschedule(contact, None, at, NOW)
    later = NOW + day // 100  # ~1% of the leads are due by now
    expected = {c for c, at in due.items() if at // SLOT < later // SLOT}
    assert 800 < len(expected) < 1200
    store.reads = store.writes = 0

    visited = [c for slot in wheel.take_due(later) for c in slot.contacts]

    assert sorted(visited) == sorted(expected)
    slots_elapsed = later // SLOT - NOW // SLOT
    # One lookup per elapsed slot plus the cursor: independent of the 99k leads not due.
    assert store.reads == slots_elapsed + 1
    assert store.writes <= 2 * slots_elapsed + 1
    # Nothing is due twice: the next tick at the same time finds nothing.
    assert list(wheel.take_due(later)) == []
    remaining = {c for key, raw in store.data.items() if b":s:" in key for c in orjson.loads(raw)}
    assert remaining == set(due) - expected


def test_reschedule_moves_a_lead_and_an_overdue_lead_waits_for_the_next_tick() -> None:
    wheel = TimerWheel({}, partition=3, slot_ms=SLOT)
    at = wheel.reschedule("a", None, NOW + 5 * SLOT, NOW)
    assert at == NOW + 5 * SLOT
    moved = wheel.reschedule("a", at, NOW + 50 * SLOT, NOW)
    assert [s.contacts for s in wheel.take_due(NOW + 10 * SLOT)] == []
    # Due in the past (e.g. a replayed history): scheduled at the first slot not yet visited.
    late = wheel.reschedule("b", None, NOW - 99 * SLOT, NOW + 10 * SLOT)
    assert late == (NOW + 10 * SLOT) // SLOT * SLOT
    assert [s.contacts for s in wheel.take_due(NOW + 12 * SLOT)] == [["b"]]
    assert wheel.reschedule("a", moved, None, NOW) is None
    assert [s.contacts for s in wheel.take_due(NOW + 60 * SLOT)] == []


def test_partitions_never_share_keys() -> None:
    store: dict[bytes, bytes] = {}
    TimerWheel(store, 0, SLOT).reschedule("x", None, NOW, NOW)
    TimerWheel(store, 1, SLOT).reschedule("y", None, NOW, NOW)
    assert [s.contacts for s in TimerWheel(store, 1, SLOT).take_due(NOW + SLOT)] == [["y"]]
    assert [s.contacts for s in TimerWheel(store, 0, SLOT).take_due(NOW + SLOT)] == [["x"]]


def test_a_slot_interrupted_before_it_was_handled_is_found_again() -> None:
    """A crash while a slot's leads are re-assessed (the tick is processed again) loses none."""
    store: dict[bytes, bytes] = {}
    wheel = TimerWheel(store, 0, SLOT)
    wheel.reschedule("a", None, NOW + SLOT, NOW)
    wheel.reschedule("b", None, NOW + 2 * SLOT, NOW)
    ticking = wheel.take_due(NOW + 5 * SLOT)
    assert next(ticking).contacts == ["a"]
    ticking.close()  # the step dies before "a" is handled
    assert [s.contacts for s in wheel.take_due(NOW + 5 * SLOT)] == [["a"], ["b"]]
    assert list(wheel.take_due(NOW + 5 * SLOT)) == []
