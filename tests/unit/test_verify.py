"""`leadscore verify`'s checks over hand-built topic contents: each invariant is
found when broken, and at_least_once replays are counted, not flagged."""

from __future__ import annotations

from typing import Any

import pytest

from leadscore.scoring import load_rules
from leadscore.scoring.engine import action_id
from leadscore.verify import Topic, check

RULES = load_rules()


def topic(name: str, records: list[dict[str, Any]], key: str = "c1") -> Topic:
    t = Topic(name)
    for r in records:
        t.by_key[key].append(r)
        t.records += 1
    return t


def change(event: str, old: float, new: float, at: int) -> dict[str, Any]:
    return {
        "event_id": event,
        "old_score": old,
        "new_score": new,
        "delta": new - old,
        "decay_applied": 0.0,
        "processed_at": at,
    }


def crossing(n: int = 0, cause: str = "e2", score: float = 61.0) -> dict[str, Any]:
    return {
        "action_id": action_id("c1", "threshold_crossed", "mql", n),
        "kind": "threshold_crossed",
        "name": "mql",
        "score": score,
        "previous_score": 30.0,
        "cause_event_id": cause,
        "emitted_at": 5,
    }


CHANGES = [change("e1", 0.0, 30.0, 1), change("e2", 30.0, 61.0, 2)]
STATE = [{"score": 61.0, "event_count": 2}]
ACTIONS = [crossing()]
STAGE_CHANGE = {
    "action_id": action_id("c1", "stage_changed", "hot", 0),
    "kind": "stage_changed",
    "name": "hot",
    "cause_event_id": "e9",
}


def run(changes=CHANGES, actions=ACTIONS, state=STATE, exactly_once=False):
    return check(
        topic("lead-state", list(state)),
        topic("score-changes", list(changes)),
        topic("actions", list(actions)),
        RULES,
        exactly_once,
    )


def test_a_consistent_lead_passes_in_both_modes() -> None:
    for exactly_once in (False, True):
        report = run(exactly_once=exactly_once)
        assert report.ok, report.render()
        assert report.audited_events == 2


@pytest.mark.parametrize(
    ("kwargs", "violation"),
    [
        ({"state": [{"score": 60.0, "event_count": 2}]}, "score differs from the audit"),
        ({"state": [{"score": 61.0, "event_count": 3}]}, "event counted twice"),
        ({"state": [{"score": 61.0, "event_count": 1}]}, "event count differs from the audit"),
        ({"actions": [STAGE_CHANGE]}, "action caused by an event never scored"),
        ({"actions": [crossing(score=59.0)]}, "threshold action without a crossing"),
        ({"actions": [crossing(), crossing(n=2)]}, "action id gap (lost action)"),
        (
            {"changes": [change("e1", 0.0, 30.0, 1), change("e2", 31.0, 61.0, 2)]},
            "audit chain broken",
        ),
    ],
)
def test_each_broken_invariant_is_reported(kwargs: dict[str, Any], violation: str) -> None:
    exactly_once = violation == "audit chain broken"  # links are checked under exactly_once
    report = run(**kwargs, exactly_once=exactly_once)
    assert not report.ok
    assert report.counts() == {violation: 1}, report.render()


def test_a_replay_is_counted_under_at_least_once_and_a_violation_under_exactly_once() -> None:
    # the crash lost e2's state write; the replay re-applied e2 and sent its action again
    replayed = [*CHANGES, change("e2", 30.0, 61.0, 3)]
    actions = [crossing(), {**crossing(), "emitted_at": 9}]
    report = run(changes=replayed, actions=actions)
    assert report.ok, report.render()
    assert (report.repeated_changes, report.repeated_actions) == (1, 1)
    strict = run(changes=replayed, actions=actions, exactly_once=True)
    assert strict.counts() == {"record repeated under exactly_once": 2, "audit chain broken": 1}


def test_merged_and_erased_leads_are_checked_for_what_their_audit_can_show() -> None:
    """A survivor counts the events of the leads merged into it, which its own audit does
    not list; a merged-away or erased lead's last state is a tombstone."""
    merged = [*CHANGES, {**change("m1", 61.0, 75.0, 3), "event_type": "merge"}]
    report = run(changes=merged, state=[{"score": 75.0, "event_count": 9}])
    assert report.ok, report.counts()
    empty = run(changes=merged, state=[{"score": 75.0, "event_count": 2}])
    assert empty.ok, "a merged lead may have had no events: the merge itself is no event"
    too_few = run(changes=merged, state=[{"score": 75.0, "event_count": 1}])
    assert too_few.counts() == {"event count differs from the audit": 1}
    gone = run(state=[STATE[0], None])
    assert gone.ok
    assert gone.tombstoned == 1
