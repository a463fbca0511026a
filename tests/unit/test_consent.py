"""Consent (issue 22): withdrawn freezes a lead, granted resumes it; latest event time wins."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from leadscore.scoring import EngagementEvent, LeadRecord, apply_event, apply_tick, load_rules
from leadscore.scoring.engine import next_due, snapshot
from leadscore.scoring.merge import merge_leads
from leadscore.scoring.rules import MS_PER_DAY
from tests.unit.test_identity import T0 as T1
from tests.unit.test_identity import Cluster

RULES = load_rules(None)
T0 = 1_762_000_000_000


def ev(n: int, kind: str, at: int, contact: str = "ada", **props: str) -> EngagementEvent:
    return EngagementEvent(
        event_id=f"e-{n}", contact_id=contact, type=kind, occurred_at=at, properties=props
    )


def run(events: list[EngagementEvent], record: LeadRecord | None = None) -> LeadRecord:
    for e in events:
        applied = apply_event(record, e, RULES, e.occurred_at)
        if applied.status in ("scored", "frozen", "duplicate"):
            record = applied.record
    assert record is not None
    return record


def test_withdrawn_freezes_the_lead_and_granted_resumes_it() -> None:
    lead = run([ev(1, "signup", T0), ev(2, "download", T0 + 1)])
    withdrawn = apply_event(lead, ev(3, "consent", T0 + 2, status="withdrawn"), RULES, T0 + 2)
    assert withdrawn.status == "scored"
    assert [(a.kind, a.name) for a in withdrawn.actions] == [("consent_withdrawn", "consent")]
    frozen = withdrawn.record
    assert frozen.frozen
    assert snapshot(frozen, RULES, T0 + 3).consent == "withdrawn"
    assert next_due(frozen, RULES) is None  # no decay-driven action while frozen

    demo = apply_event(frozen, ev(4, "demo_request", T0 + 3), RULES, T0 + 3)
    assert demo.status == "frozen"
    assert demo.record is frozen
    assert demo.actions == ()
    assert apply_tick(frozen, RULES, T0 + 90 * MS_PER_DAY).actions == ()

    granted = apply_event(frozen, ev(5, "consent", T0 + 4, status="granted"), RULES, T0 + 4)
    assert granted.status == "scored"
    assert not granted.record.frozen
    after = apply_event(granted.record, ev(6, "demo_request", T0 + 5), RULES, T0 + 5)
    assert after.status == "scored"
    assert round(after.record.score, 3) == 60.0  # signup, download, demo; the frozen one not
    assert [(a.kind, a.name) for a in after.actions if a.kind == "threshold_crossed"] == [
        ("threshold_crossed", "mql")
    ]


@given(
    st.lists(
        st.tuples(st.sampled_from(["granted", "withdrawn"]), st.integers(0, 10 * 60_000)),
        min_size=1,
        max_size=8,
    ),
    st.randoms(use_true_random=False),
)
def test_the_latest_consent_by_event_time_wins_in_any_arrival_order(consents, rnd) -> None:
    events = [ev(n, "consent", T0 + at, status=status) for n, (status, at) in enumerate(consents)]
    shuffled = list(events)
    rnd.shuffle(shuffled)
    latest = max((e.occurred_at, e.properties["status"]) for e in events)
    for order in (events, shuffled):
        record = run(order)
        assert (record.consent_ms, record.consent) == latest


def test_a_merge_keeps_the_latest_consent_and_a_frozen_survivor_fires_nothing() -> None:
    known = run([ev(1, "signup", T0), ev(2, "consent", T0 + 1, status="withdrawn")])
    anon = run([ev(3, "demo_request", T0 + 2, contact="anon")])
    merged = merge_leads(known, anon, RULES, T0 + 3, "ada")
    assert merged.record.frozen
    assert merged.actions == ()  # 50 points would make it hot; frozen, it stays warm
    assert merged.record.stage == known.stage


def test_the_step_counts_frozen_events_and_dead_letters_a_consent_without_a_status() -> None:
    cluster = Cluster()
    cluster.event("ada", "1", "signup", T1)
    cluster.event("ada", "2", "consent", T1 + 1, properties={"status": "withdrawn"})
    frozen = cluster.run_event("ada", "3", "demo_request", T1 + 2)
    assert frozen.frozen == 1
    assert not frozen.outputs  # nothing of it is kept or sent
    cluster.event("ada", "4", "consent", T1 + 3, properties={"status": "maybe"})
    assert [reason for reason, _ in cluster.dead] == ["invalid_consent"]
    states = [o for o in cluster.outputs if o.destination == "lead_state"]
    assert orjson.loads(states[-1].value or b"")["consent"] == "withdrawn"
