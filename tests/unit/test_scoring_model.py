"""The full scoring model: conditions, caps, fit, disqualification, explanations, decay timing.

Laws are proven with hypothesis over generated histories scored with
examples/rules.yaml (the complete example shipped in the repo).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leadscore.scoring import (
    EngagementEvent,
    LeadRecord,
    apply_event,
    apply_tick,
    load_rules,
    next_due,
    parse_rules,
    snapshot,
)
from leadscore.scoring.engine import Applied
from leadscore.scoring.rules import MS_PER_DAY, Rules

EXAMPLE = load_rules(Path(__file__).resolve().parents[2] / "examples" / "rules.yaml")
NO_CAPS = EXAMPLE.model_copy(update={"caps": ()})
T0 = 1_762_000_000_000
MINUTE = 60_000


def ev(i: int, kind: str, at: int, contact: str = "c-1", **props: str) -> EngagementEvent:
    return EngagementEvent(
        event_id=f"e-{i}", contact_id=contact, type=kind, occurred_at=at, properties=props
    )


def run(events: list[EngagementEvent], rules: Rules) -> tuple[LeadRecord | None, list[Applied]]:
    record: LeadRecord | None = None
    outcomes = []
    for e in events:
        applied = apply_event(record, e, rules, now_ms=e.occurred_at)
        if applied.status == "scored":
            record = applied.record
        outcomes.append(applied)
    return record, outcomes


# Generated events cover every kind of rule in the example file.
KINDS = st.sampled_from(
    [
        ("page_view", {"url": "/blog/a"}),
        ("page_view", {"url": "/pricing"}),
        ("page_view", {"url": "/PRICING/teams"}),
        ("email_open", {}),
        ("email_click", {}),
        ("download", {}),
        ("webinar_attended", {"minutes": "45"}),
        ("webinar_attended", {"minutes": "10"}),
        ("webinar_attended", {"minutes": "lots"}),
        ("signup", {}),
        ("demo_request", {}),
        ("unsubscribe", {}),
        ("identify", {"seniority": "vp", "company_size": "1200", "industry": "software"}),
        ("identify", {"seniority": "intern", "company_size": "12", "country": "US"}),
        ("identify", {"company_size": "9000", "email": "x@gmail.com"}),
        ("page_view", {"email": "someone@rival.example"}),
        ("disqualify", {}),
        ("requalify", {}),
        ("tweeted", {}),
    ]
)
histories = st.lists(
    st.tuples(KINDS, st.integers(min_value=0, max_value=6 * MS_PER_DAY)), min_size=1, max_size=30
).map(lambda xs: [ev(i, kind, T0 + off, **props) for i, ((kind, props), off) in enumerate(xs)])


# --- conditions, replaces, negative points -----------------------------------------------------


def test_a_pricing_page_view_scores_15_instead_of_1() -> None:
    _, outcomes = run(
        [ev(1, "page_view", T0, url="/blog"), ev(2, "page_view", T0, url="/Pricing/teams")],
        EXAMPLE,
    )
    changes = [o.change for o in outcomes]
    assert [[(r.rule_id, r.points) for r in c.reasons] for c in changes if c] == [
        [("page-view", 1.0)],
        [("pricing-page", 15.0)],
    ]


@pytest.mark.parametrize(
    ("condition", "properties", "expected"),
    [
        ("{property: url, prefix: /pricing}", {"url": "/PRICING"}, True),
        ("{property: url, prefix: /pricing, case_sensitive: true}", {"url": "/PRICING"}, False),
        ("{property: email, suffix: ['@a.io', '@b.io']}", {"email": "x@B.io"}, True),
        ("{property: email, suffix: ['@a.io', '@b.io']}", {"email": "x@c.io"}, False),
        ("{property: plan, one_of: [pro, team]}", {"plan": "Team"}, True),
        ("{property: plan, equals: pro}", {"plan": "pro "}, False),
        ("{property: title, contains: market}", {"title": "VP Marketing"}, True),
        ("{property: url, regex: '^/docs/(api|sdk)/'}", {"url": "/docs/sdk/python"}, True),
        ("{property: url, regex: '^/docs/(api|sdk)/'}", {"url": "/blog/docs/api/"}, False),
        ("{property: size, gte: 200, lt: 5000}", {"size": "200"}, True),
        ("{property: size, gte: 200, lt: 5000}", {"size": "5000"}, False),
        ("{property: size, gt: 10}", {"size": "many"}, False),
        ("{property: size, gt: 10}", {"size": "nan"}, False),
        ("{property: size, gt: 10}", {}, False),
        ("{property: coupon, exists: true}", {"coupon": ""}, True),
        ("{property: coupon, exists: false}", {}, True),
    ],
)
def test_conditions(condition: str, properties: dict[str, str], expected: bool) -> None:
    rules = parse_rules(
        f"""version: t
rules: [{{id: r, event_type: x, points: 5, when: [{condition}]}}]
stages: [{{name: cold, min_score: 0}}]
"""
    )
    assert bool(rules.matching("x", properties)) is expected


def test_several_matching_rules_add_up_and_negative_points_subtract() -> None:
    rules = parse_rules(
        """version: t
rules:
  - {id: any-download, event_type: download, points: 10}
  - {id: whitepaper, event_type: download, points: 5, when: [{property: asset, suffix: .pdf}]}
  - {id: unsubscribe, event_type: unsubscribe, points: -20}
stages: [{name: cold, min_score: 0}, {name: warm, min_score: 11}]
"""
    )
    record, outcomes = run(
        [ev(1, "download", T0, asset="guide.pdf"), ev(2, "unsubscribe", T0)], rules
    )
    assert record is not None
    assert outcomes[0].change is not None
    assert outcomes[0].change.delta == 15
    assert record.score == -5
    assert record.stage == "cold"
    assert [a.name for a in outcomes[0].actions] == ["warm"]
    assert [a.name for a in outcomes[1].actions] == ["cold"]


# --- caps --------------------------------------------------------------------------------------


def test_cap_clips_and_explains_the_clipping() -> None:
    opens = [ev(i, "email_open", T0 + i * MINUTE) for i in range(12)]
    record, outcomes = run(opens, EXAMPLE.model_copy(update={"half_life_days": 1e6}))
    assert record is not None
    assert round(record.score, 3) == 30
    last = outcomes[-1].change
    assert last is not None
    assert last.delta == 0
    (reason,) = last.reasons
    assert (reason.rule_id, round(reason.clipped, 3), reason.cap_id) == (
        "email-open",
        3,
        "email-weekly",
    )
    # Eight days later the window has moved on: opens count again.
    later = apply_event(record, ev(99, "email_open", T0 + 8 * MS_PER_DAY), EXAMPLE, T0)
    assert later.change is not None
    assert later.change.reasons[0].clipped == 0


CAPPED = parse_rules(
    """version: caps
half_life_days: 1000000
rules:
  - {id: open, event_type: email_open, points: 3}
  - {id: click, event_type: email_click, points: 5}
  - {id: view, event_type: page_view, points: 1}
caps:
  - {id: email, rules: [open, click], max_points: 20, window_days: 2}
  - {id: views, rules: [view], max_points: 4, window_days: 0.5}
stages: [{name: cold, min_score: 0}]
"""
)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["email_open", "email_click", "page_view"]),
            st.integers(min_value=0, max_value=6 * MS_PER_DAY),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_caps_are_never_exceeded_inside_any_window(arrivals) -> None:
    """Whatever the arrival order (late events included), no window holds more than the cap."""
    events = [ev(i, kind, T0 + off) for i, (kind, off) in enumerate(arrivals)]
    _, outcomes = run(events, CAPPED)
    granted: dict[str, list[tuple[int, float]]] = {"email": [], "views": []}
    group = {"open": "email", "click": "email", "view": "views"}
    for e, o in zip(events, outcomes, strict=True):
        assert o.change is not None
        for reason in o.change.reasons:
            assert reason.points >= 0
            granted[group[reason.rule_id]].append((e.occurred_at, reason.points))
    for cap in CAPPED.caps:
        grants = granted[cap.id]
        for start, _ in grants:  # every window that starts at a grant; others hold no more
            inside = sum(p for t, p in grants if start <= t < start + cap.window_ms)
            assert inside <= cap.max_points + 1e-6


# --- fit and grades ----------------------------------------------------------------------------


def test_fit_scores_traits_without_decay_and_gates_thresholds_by_grade() -> None:
    engaged = [
        ev(1, "demo_request", T0),
        ev(2, "signup", T0 + MINUTE),
        ev(3, "download", T0 + 2 * MINUTE),
        ev(4, "page_view", T0 + 3 * MINUTE, url="/pricing"),
    ]
    record, outcomes = run(engaged, EXAMPLE)
    assert record is not None
    assert record.score > 60
    assert record.stage == "qualified"
    assert not [a for o in outcomes for a in o.actions if a.kind == "threshold_crossed"]
    # A profile that makes the grade A: mql fires now (both conditions hold), sql not (score < 90).
    profile = ev(
        5, "identify", T0 + 60 * MS_PER_DAY, seniority="VP", company_size="800", industry="fintech"
    )
    applied = apply_event(record, profile, EXAMPLE, T0)
    assert applied.record.fit == 75
    assert snapshot(applied.record, EXAMPLE, T0).grade == "A"
    # Sixty days of decay took the engagement score below 60: fit alone does not qualify.
    assert [a.kind for a in applied.actions] == ["stage_changed"]
    fresh = [
        ev(10 + i, e.type, T0 + 61 * MS_PER_DAY + i, **e.properties) for i, e in enumerate(engaged)
    ]
    _final, outcomes = run([profile, *fresh], EXAMPLE)
    crossed = [a for o in outcomes for a in o.actions if a.kind == "threshold_crossed"]
    assert [(a.name, a.grade) for a in crossed] == [("mql", "A")]
    assert [r.rule_id for r in crossed[0].fit_reasons] == [
        "senior-title",
        "mid-market",
        "target-industry",
    ]


def test_latest_trait_wins_by_event_time_not_arrival() -> None:
    newer = ev(1, "identify", T0 + 10, company_size="9000")
    older = ev(2, "identify", T0, company_size="20")
    a, _ = run([newer, older], EXAMPLE)
    b, _ = run([older, newer], EXAMPLE)
    assert a is not None
    assert b is not None
    assert a.fit == b.fit == 35


# --- disqualification --------------------------------------------------------------------------


def test_disqualify_once_then_requalify() -> None:
    events = [
        ev(1, "demo_request", T0),
        ev(2, "identify", T0 + 1, email="pat@rival.example", seniority="vp", company_size="800"),
        ev(3, "disqualify", T0 + 2),
        ev(4, "signup", T0 + 3),
        ev(5, "requalify", T0 + 4),
    ]
    record, outcomes = run(events, EXAMPLE)
    kinds = [[(a.kind, a.name) for a in o.actions] for o in outcomes]
    assert kinds == [
        [("stage_changed", "warm")],
        [("disqualified", "competitor")],
        [],  # already disqualified: no second action
        [],  # 50 points, but no stage change while disqualified
        [("stage_changed", "hot")],
    ]
    assert record is not None
    assert not record.disqualified
    assert snapshot(outcomes[3].record, EXAMPLE, T0).to_dict()["stage"] == "disqualified"


def test_a_requalification_older_than_the_disqualification_does_not_count() -> None:
    record, _ = run([ev(1, "disqualify", T0 + 10), ev(2, "requalify", T0)], EXAMPLE)
    assert record is not None
    assert record.disqualified


@given(histories)
def test_a_disqualified_lead_emits_no_threshold_action_until_requalified(events) -> None:
    _, outcomes = run(events, EXAMPLE)
    blocked = False
    for e, o in zip(events, outcomes, strict=True):
        if o.status != "scored":
            continue
        if e.type == "requalify" and not o.record.disqualified:
            blocked = False
        kinds = [a.kind for a in o.actions]
        if "threshold_crossed" in kinds:
            assert not blocked, "threshold action from a disqualified lead"
            assert not o.record.disqualified
        if "disqualified" in kinds:
            blocked = True


# --- order independence, duplicates, explanations ----------------------------------------------


@given(histories, st.randoms(use_true_random=False))
def test_without_caps_any_arrival_order_gives_the_same_state(events, rnd) -> None:
    shuffled = list(events)
    rnd.shuffle(shuffled)
    a, _ = run(events, NO_CAPS)
    b, _ = run(shuffled, NO_CAPS)
    assert a is not None
    assert b is not None
    assert math.isclose(a.score, b.score, rel_tol=1e-9, abs_tol=1e-9)
    assert (a.stage, a.fit, a.disqualified) == (b.stage, b.fit, b.disqualified)


@given(histories, st.data())
def test_duplicates_never_change_state_even_with_caps(events, data) -> None:
    record, _ = run(events, EXAMPLE)
    again = data.draw(st.sampled_from(events))
    replay = apply_event(record, again, EXAMPLE, now_ms=again.occurred_at)
    assert replay.status == "duplicate"
    assert replay.record == record
    assert replay.actions == ()


@given(histories)
def test_every_change_is_explained_to_the_point(events) -> None:
    record, outcomes = run(events, EXAMPLE)
    for o in outcomes:
        if o.change is None:
            continue
        c = o.change
        assert math.isclose(sum(r.points for r in c.reasons), c.delta, abs_tol=1e-9)
        assert math.isclose(c.old_score - c.decay_applied + c.delta, c.new_score, abs_tol=1e-9)
        assert c.rules_version == EXAMPLE.version
    assert record is not None
    assert math.isclose(sum(record.contributions.values()), record.score, abs_tol=1e-6)
    assert LeadRecord.from_dict(record.to_dict()) == record


# --- decay-driven transitions ------------------------------------------------------------------


@given(histories)
def test_decay_transitions_happen_exactly_when_scheduled(events) -> None:
    """At the scheduled time the stage changes or a threshold re-arms; a second earlier, not."""
    record, _ = run(events, EXAMPLE)
    assert record is not None
    due = next_due(record, EXAMPLE)
    assert due == record.due_ms
    if due is None or due - 1000 <= record.assessed_ms:
        return
    early = apply_tick(record, EXAMPLE, due - 1000).record
    assert (early.stage, early.fired) == (record.stage, record.fired)
    on_time = apply_tick(record, EXAMPLE, due).record
    assert (on_time.stage, on_time.fired) != (record.stage, record.fired)
    assert on_time.due_ms is None or on_time.due_ms > due


def test_idle_lead_cools_down_stage_by_stage_without_events() -> None:
    record, _ = run(
        [ev(1, "demo_request", T0), ev(2, "signup", T0), ev(3, "download", T0)], EXAMPLE
    )
    assert record is not None
    seen = []
    while record.due_ms is not None:
        ticked = apply_tick(record, EXAMPLE, record.due_ms)
        seen += [(a.kind, a.previous_stage, a.stage, a.cause_event_id) for a in ticked.actions]
        record = ticked.record
    assert seen == [
        ("stage_changed", "qualified", "hot", None),
        ("stage_changed", "hot", "warm", None),
        ("stage_changed", "warm", "cold", None),
    ]
    # 60 points fall below 11 after log2(60 / 11) half-lives.
    assert record.assessed_ms - T0 == pytest.approx(
        EXAMPLE.half_life_ms * math.log2(60 / (11 - 0.00005)), abs=1
    )


def test_decay_rearms_a_threshold_so_it_can_fire_again() -> None:
    rules = load_rules()  # mql at 60, re-arms below 50
    record, outcomes = run([ev(1, "demo_request", T0), ev(2, "demo_request", T0 + 1)], rules)
    assert record is not None
    assert record.fired == ["mql"]
    while record.fired:
        assert record.due_ms is not None
        record = apply_tick(record, rules, record.due_ms).record
    back = apply_event(record, ev(3, "demo_request", record.assessed_ms), rules, T0)
    assert [a.name for a in back.actions if a.kind == "threshold_crossed"] == ["mql"]
    assert back.actions[-1].action_id != outcomes[1].actions[-1].action_id
