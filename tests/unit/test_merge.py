"""The merge laws (issue 22): merging is exact, associative, order-independent and
idempotent; with caps, no window holds more than its cap afterwards."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from leadscore.scoring import EngagementEvent, LeadRecord, apply_event, load_rules, new_lead
from leadscore.scoring.merge import merge_id, merge_leads
from leadscore.scoring.rules import MS_PER_DAY, Rules
from tests.unit.test_scoring_model import CAPPED, EXAMPLE, KINDS, NO_CAPS, T0

CONTACTS = ("known", "anon", "other")
DEFAULT = load_rules(None)


def ev(n: int, contact: str, kind: str, at: int, props: dict[str, str]) -> EngagementEvent:
    return EngagementEvent(
        event_id=f"{contact}-{n}", contact_id=contact, type=kind, occurred_at=at, properties=props
    )


def events_of(contact: str) -> st.SearchStrategy[list[EngagementEvent]]:
    """Up to 15 events of one contact over 6 days (inside the dedupe horizon)."""
    return st.lists(
        st.tuples(KINDS, st.integers(min_value=0, max_value=6 * MS_PER_DAY)), max_size=15
    ).map(
        lambda xs: [
            ev(n, contact, kind, T0 + off, props) for n, ((kind, props), off) in enumerate(xs)
        ]
    )


def score(events: list[EngagementEvent], rules: Rules, record: LeadRecord | None = None):
    for e in events:
        applied = apply_event(record, e, rules, now_ms=e.occurred_at)
        if applied.status == "scored":
            record = applied.record
    return record


def lead(contact: str, events: list[EngagementEvent], rules: Rules) -> LeadRecord:
    """The lead of these events (a new, empty one without events)."""
    return score(events, rules) or new_lead(contact, None, rules)


def rekeyed(events: list[EngagementEvent], contact: str) -> list[EngagementEvent]:
    return [e.model_copy(update={"contact_id": contact}) for e in events]


def merged(survivor: LeadRecord, absorbed: LeadRecord, rules: Rules) -> LeadRecord:
    applied = merge_leads(survivor, absorbed, rules, T0 + 7 * MS_PER_DAY, survivor.contact_id)
    assert applied.status == "merged"
    return applied.record


def same(a: LeadRecord, b: LeadRecord) -> None:
    """Equal in everything events decide (merge ids and action sequences aside)."""
    assert math.isclose(a.score, b.score, rel_tol=1e-9, abs_tol=1e-9)
    assert a.event_count == b.event_count
    assert (a.ref_ms, a.first_event_ms) == (b.ref_ms, b.first_event_ms)
    assert a.velocity == b.velocity
    assert (a.fit, a.traits, a.disqualified) == (b.fit, b.traits, b.disqualified)
    assert a.stage == b.stage
    for rule_id in a.contributions.keys() | b.contributions.keys():
        got, want = a.contributions.get(rule_id, 0.0), b.contributions.get(rule_id, 0.0)
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9), rule_id


@given(events_of("known"), events_of("anon"))
def test_without_caps_a_merge_equals_the_core_over_all_the_events(known, anon) -> None:
    """The combined lead is what the scoring core makes of both leads' events as one."""
    k, a = lead("known", known, NO_CAPS), lead("anon", anon, NO_CAPS)
    combined = merged(k, a, NO_CAPS)
    union = score(known + rekeyed(anon, "known"), NO_CAPS)
    if union is None:
        assert combined.event_count == 0
        return
    same(combined, union)
    assert {e.contact_id for e in anon} <= {"anon"}  # the absorbed events were not touched


@given(events_of("known"), events_of("anon"), events_of("other"))
def test_merging_is_associative_and_order_independent(known, anon, other) -> None:
    k, a, o = (lead(c, es, NO_CAPS) for c, es in zip(CONTACTS, (known, anon, other), strict=True))
    left = merged(merged(k, a, NO_CAPS), o, NO_CAPS)
    right = merged(k, merged(a, o, NO_CAPS), NO_CAPS)
    swapped = merged(merged(k, o, NO_CAPS), a, NO_CAPS)
    same(left, right)
    same(left, swapped)


@given(events_of("known"), events_of("anon"), events_of("known").map(lambda es: es[::-1]))
def test_a_merge_then_events_equals_events_then_the_merge(known, anon, later) -> None:
    later = [e.model_copy(update={"event_id": f"later-{e.event_id}"}) for e in later]
    k, a = lead("known", known, NO_CAPS), lead("anon", anon, NO_CAPS)
    merge_first = score(later, NO_CAPS, merged(k, a, NO_CAPS))
    events_first = merged(score(later, NO_CAPS, k) or k, a, NO_CAPS)
    assert merge_first is not None
    same(merge_first, events_first)


@given(events_of("known"), events_of("anon"))
def test_a_merge_applied_again_changes_nothing(known, anon) -> None:
    k, a = lead("known", known, EXAMPLE), lead("anon", anon, EXAMPLE)
    once = merged(k, a, EXAMPLE)
    again = merge_leads(once, a, EXAMPLE, T0 + 8 * MS_PER_DAY, "known")
    assert again.status == "duplicate"
    assert again.record == once
    assert again.actions == ()
    assert merge_id("known", "anon") != merge_id("anon", "known")


CAPPED_KINDS = st.sampled_from(["email_open", "email_click", "page_view"])


def capped_events(contact: str) -> st.SearchStrategy[list[EngagementEvent]]:
    return st.lists(
        st.tuples(CAPPED_KINDS, st.integers(min_value=0, max_value=3 * MS_PER_DAY)), max_size=30
    ).map(lambda xs: [ev(n, contact, kind, T0 + off, {}) for n, (kind, off) in enumerate(xs)])


@given(capped_events("known"), capped_events("anon"))
def test_with_caps_no_window_holds_more_than_its_cap_after_a_merge(known, anon) -> None:
    k, a = lead("known", known, CAPPED), lead("anon", anon, CAPPED)
    combined = merged(k, a, CAPPED)
    for cap in CAPPED.caps:
        grants = combined.cap_credits.get(cap.id, [])
        for start, _ in grants:
            inside = sum(p for t, p in grants if start <= t < start + cap.window_ms)
            assert inside <= cap.max_points + 1e-6
    # what the caps took off came off the score and the contributions alike
    assert math.isclose(sum(combined.contributions.values()), combined.score, abs_tol=1e-6)
    assert combined.score <= k.score + a.score + 1e-9  # the half-life is a million days


def test_a_merge_records_where_it_came_from_and_fires_on_the_survivor() -> None:
    k = lead("known", [ev(1, "known", "demo_request", T0, {})], DEFAULT)
    a = lead("anon", [ev(2, "anon", "signup", T0, {}), ev(3, "anon", "download", T0, {})], DEFAULT)
    assert (k.fired, a.fired) == ([], [])  # 30 and 30: neither crossed mql (60) alone
    applied = merge_leads(k, a, DEFAULT, T0 + 10, "known")
    assert applied.change is not None
    assert applied.change.merged_from == "anon"
    assert applied.change.event_id == merge_id("known", "anon")
    assert math.isclose(
        applied.change.old_score - applied.change.decay_applied + applied.change.delta,
        applied.change.new_score,
        abs_tol=1e-9,
    )
    assert [(r.rule_id, r.points) for r in applied.change.reasons] == [
        ("signup", 20.0),
        ("download", 10.0),
    ]
    crossed = [x for x in applied.actions if x.kind == "threshold_crossed"]
    assert [(x.contact_id, x.name, x.cause_event_id) for x in crossed] == [
        ("known", "mql", merge_id("known", "anon"))
    ]
