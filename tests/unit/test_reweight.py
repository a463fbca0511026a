"""Rule changes (issue 24): a lead re-weighted under a version that changed only points
equals the lead scored from its events under that version; other changes are forward."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from leadscore.scoring import EngagementEvent, LeadRecord, apply_event, parse_rules
from leadscore.scoring.reweight import classify, reweigh
from leadscore.scoring.rules import MS_PER_DAY, Rules

T0 = 1_760_000_000_000
BASE = """
version: v1
half_life_days: 14
rules:
  - {id: page-view, event_type: page_view, points: 1}
  - id: pricing
    event_type: page_view
    points: 15
    when: [{property: url, equals: /pricing}]
    replaces: [page-view]
  - {id: email-open, event_type: email_open, points: 3}
  - {id: download, event_type: download, points: 10}
  - {id: demo, event_type: demo_request, points: 30}
  - {id: unsubscribe, event_type: unsubscribe, points: -20}
  - {id: webinar, event_type: webinar, points: 12}
caps:
  - {id: webinars, rules: [webinar], max_points: 20, window_days: 7}
fit:
  rules:
    - {id: senior, when: [{property: seniority, one_of: [vp, director]}], points: 30}
    - {id: big, when: [{property: size, gte: 1000}], points: 20}
  grades: [{name: C, min_fit: 0}, {name: B, min_fit: 30}, {name: A, min_fit: 50}]
stages:
  - {name: cold, min_score: 0}
  - {name: warm, min_score: 11}
  - {name: hot, min_score: 31}
  - {name: qualified, min_score: 60}
thresholds:
  - {name: mql, score: 60, hysteresis: 10}
"""
OLD = parse_rules(BASE)
UNCAPPED = ["page-view", "pricing", "email-open", "download", "demo", "unsubscribe"]
FIT = ["senior", "big"]


def with_points(rules: Rules, version: str, points: dict[str, float]) -> Rules:
    return rules.model_copy(
        update={
            "version": version,
            "rules": tuple(
                r.model_copy(update={"points": points.get(r.id, r.points)}) for r in rules.rules
            ),
            "fit": rules.fit.model_copy(
                update={
                    "rules": tuple(
                        r.model_copy(update={"points": points.get(r.id, r.points)})
                        for r in rules.fit.rules
                    )
                }
            ),
        }
    )


events = st.lists(
    st.tuples(
        st.sampled_from(
            [
                ("page_view", {}),
                ("page_view", {"url": "/pricing"}),
                ("email_open", {}),
                ("download", {}),
                ("demo_request", {}),
                ("unsubscribe", {}),
                ("webinar", {}),
                ("identify", {"seniority": "vp", "size": "1500"}),
                ("identify", {"seniority": "intern", "size": "50"}),
            ]
        ),
        st.integers(0, 6 * MS_PER_DAY),
    ),
    min_size=1,
    max_size=30,
)
new_points = st.dictionaries(
    st.sampled_from(UNCAPPED + FIT),
    st.floats(min_value=-50, max_value=80, allow_nan=False).filter(lambda p: p != 0),
    min_size=1,
)


def score(history: list, rules: Rules) -> LeadRecord:
    record = None
    for i, ((kind, properties), offset) in enumerate(history):
        at = T0 + offset
        event = EngagementEvent(
            event_id=f"e{i}", contact_id="ada", type=kind, occurred_at=at, properties=properties
        )
        record = apply_event(record, event, rules, at + 1).record
    assert record is not None
    return record


@given(events, new_points)
def test_reweighting_equals_scoring_the_events_under_the_new_points(history, points) -> None:
    new = with_points(OLD, "v2", points)
    change = classify(OLD, new)
    changed = any(
        p != r.points for r in (*OLD.rules, *OLD.fit.rules) for i, p in points.items() if i == r.id
    )
    assert change.kind == ("points_only" if changed else "none")
    got = reweigh(score(history, OLD), change, new, T0).record
    want = score(history, new)
    assert math.isclose(got.score, want.score, rel_tol=1e-9, abs_tol=1e-9)
    assert got.contributions.keys() == want.contributions.keys()
    for rule_id, points_now in want.contributions.items():
        assert math.isclose(got.contributions[rule_id], points_now, rel_tol=1e-9, abs_tol=1e-9)
    assert (got.fit, got.fit_contributions) == (want.fit, want.fit_contributions)
    assert got.stage == want.stage
    assert got.rules_version == "v2"


def test_a_change_beyond_points_is_forward_and_says_why() -> None:
    stages = OLD.model_copy(update={"version": "v2", "half_life_days": 30})
    assert classify(OLD, stages).kind == "forward"
    assert "half_life_days" in classify(OLD, stages).why[0]
    capped = with_points(OLD, "v2", {"webinar": 20})
    assert classify(OLD, capped).kind == "forward"
    assert "cap webinars" in classify(OLD, capped).why[0]
    zero = with_points(OLD, "v2", {"download": 0})
    assert classify(zero, with_points(OLD, "v3", {})).kind == "forward"
    assert classify(OLD, OLD.model_copy(update={"version": "v2"})).kind == "none"


def test_silent_reweighting_moves_the_stage_without_actions_and_fire_sends_them() -> None:
    history = [(("demo_request", {}), 0), (("download", {}), 1000)]  # 40 points: hot
    record = score(history, OLD)
    assert record.stage == "hot"
    new = with_points(OLD, "v2", {"demo": 60})  # 70 points: qualified, mql crossed
    change = classify(OLD, new)
    silent = reweigh(record, change, new, T0 + 5)
    assert (silent.record.stage, silent.actions) == ("qualified", ())
    assert silent.record.fired == ["mql"]  # crossed while silent: not fired again later
    assert silent.record.action_seq == record.action_seq
    loud = reweigh(record, change, new, T0 + 5, fire=True)
    assert [(a.kind, a.name) for a in loud.actions] == [
        ("stage_changed", "qualified"),
        ("threshold_crossed", "mql"),
    ]
    assert loud.actions[0].rules_version == "v2"
