"""The timer wheel visits due leads only, and is rebuilt from lead records alone."""

from __future__ import annotations

import random

from leadscore.step.wheel import Timers, TimerWheel

SLOT = 10_000
NOW = 1_762_000_000_000


def test_a_tick_over_100k_leads_with_1_percent_due_visits_only_those() -> None:
    rng = random.Random(7)
    wheel = TimerWheel(partition=0, slot_ms=SLOT, now_ms=NOW)
    day = 86_400_000
    due = {f"c-{i}": NOW + rng.randrange(day) for i in range(100_000)}
    for contact, at in due.items():
        wheel.reschedule(contact, None, at)
    later = NOW + day // 100  # ~1% of the leads are due by now
    expected = {c for c, at in due.items() if at // SLOT < later // SLOT}
    assert 800 < len(expected) < 1200

    visited = [c for slot in wheel.take_due(later) for c in slot.contacts]

    assert sorted(visited) == sorted(expected)
    # Nothing is due twice: the next tick at the same time finds nothing.
    assert list(wheel.take_due(later)) == []
    remaining = {c for contacts in wheel.slots.values() for c in contacts}
    assert remaining == set(due) - expected


def test_10k_new_leads_in_one_slot_cost_one_insert_each() -> None:
    """A slot kept as one changelogged record was rewritten whole for each lead added:
    10k leads in one second wrote 1.5 GB and a slot over 1 MB stopped the worker."""
    wheel = TimerWheel(partition=0, slot_ms=SLOT, now_ms=NOW)
    for i in range(10_000):
        wheel.reschedule(f"c-{i}", None, NOW + SLOT + 1)
    assert len(wheel) == 10_000
    assert [len(s.contacts) for s in wheel.take_due(NOW + 2 * SLOT)] == [10_000]


def test_reschedule_moves_a_lead_and_an_overdue_lead_waits_for_the_next_tick() -> None:
    wheel = TimerWheel(partition=3, slot_ms=SLOT, now_ms=NOW)
    at = wheel.reschedule("a", None, NOW + 5 * SLOT)
    assert at == NOW + 5 * SLOT
    moved = wheel.reschedule("a", at, NOW + 50 * SLOT)
    assert [s.contacts for s in wheel.take_due(NOW + 10 * SLOT)] == []
    # Due in the past (e.g. a replayed history): scheduled at the first slot not yet visited.
    late = wheel.reschedule("b", None, NOW - 99 * SLOT)
    assert late == (NOW + 10 * SLOT) // SLOT * SLOT
    assert [s.contacts for s in wheel.take_due(NOW + 12 * SLOT)] == [["b"]]
    assert wheel.reschedule("a", moved, None) is None
    assert [s.contacts for s in wheel.take_due(NOW + 60 * SLOT)] == []


def test_a_rebuilt_wheel_holds_what_the_lead_records_say() -> None:
    """After a crash the next owner rebuilds from the lead records: leads due while
    nobody owned the partition are visited by the first tick, the rest when due."""
    timers = Timers(SLOT)
    leads = [("a", NOW - 7 * SLOT, "warm"), ("b", NOW + 3 * SLOT, "hot"), ("c", None, "cold")]
    timers.rebuild(2, leads, NOW)
    wheel = timers.wheel(2, NOW)
    assert [s.contacts for s in wheel.take_due(NOW + SLOT)] == [["a"]]
    assert [s.contacts for s in wheel.take_due(NOW + 5 * SLOT)] == [["b"]]
    assert timers.census([2], ["cold", "warm", "hot", "mql"]) == {
        "cold": 1,
        "warm": 1,
        "hot": 1,
        "mql": 0,
    }
    timers.keep_only([0])  # partition 2 was revoked
    assert timers.census([2], ["warm"]) == {"warm": 0}
    assert 2 not in timers.wheels
