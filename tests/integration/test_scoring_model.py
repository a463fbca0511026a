"""The full scoring model through Kafka: decay-driven transitions, conditions, caps, fit,
disqualification and rule versions, on the real broker with real worker processes."""

from __future__ import annotations

import math
import time
from pathlib import Path

import orjson
import pytest

from leadscore.explain import explain, read_events
from leadscore.scoring import EngagementEvent, load_rules
from leadscore.scoring.engine import ROUNDING
from tests.integration.test_pipeline import ev, values
from tests.support.deployments import Deployment
from tests.support.records import consume, count_now, produce

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_RULES = ROOT / "examples" / "rules.yaml"

FAST_DECAY = """
version: fast-decay-1
half_life_days: 0.0001          # 8.64 seconds
rules:
  - {id: signup, event_type: signup, points: 20}
  - {id: demo, event_type: demo_request, points: 30}
stages:
  - {name: cold, min_score: 0}
  - {name: warm, min_score: 11}
  - {name: hot, min_score: 31}
thresholds:
  - {name: mql, score: 45, hysteresis: 5}
"""


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_decay_downgrades_an_idle_lead_with_no_new_event(
    deployment: Deployment, start_worker, tmp_path: Path, guarantee: str
) -> None:
    rules_file = tmp_path / "fast.yaml"
    rules_file.write_text(FAST_DECAY, encoding="utf-8")
    rules = load_rules(rules_file)
    deployment.extra.update(
        LEADSCORE_RULES_FILE=str(rules_file),
        LEADSCORE_TIMER_INTERVAL_SECONDS="1",
        LEADSCORE_PROCESSING_GUARANTEE=guarantee,
    )
    start_worker()
    at = int(time.time() * 1000)
    produce(
        deployment.bootstrap,
        deployment.topic("events"),
        [ev("d1", "ivy", "demo_request", at), ev("d2", "ivy", "signup", at)],
    )
    # warm, hot and mql from the events, then warm and cold from decay alone.
    actions = values(consume(deployment.bootstrap, deployment.topic("actions"), 5, timeout=90))
    assert [(a["kind"], a["name"], a["cause_event_id"]) for a in actions] == [
        ("stage_changed", "warm", "d1"),
        ("stage_changed", "hot", "d2"),
        ("threshold_crossed", "mql", "d2"),
        ("stage_changed", "warm", None),
        ("stage_changed", "cold", None),
    ]
    for action, boundary in zip(actions[3:], (31, 11), strict=True):
        crossing = at + rules.half_life_ms * math.log2(50 / (boundary - ROUNDING))
        lag_ms = action["emitted_at"] - crossing
        print(f"decay to {action['name']}: emitted {lag_ms:.0f} ms after the computed crossing")
        assert 0 <= lag_ms < 60_000, "must land within a minute of the crossing, never early"
        assert action["score"] < boundary
        assert action["previous_stage"] == {"warm": "hot", "cold": "warm"}[action["name"]]
    # The audit trail only has the two events: decay changes no stored score.
    assert count_now(deployment.bootstrap, deployment.topic("score-changes")) == 2
    states = values(consume(deployment.bootstrap, deployment.topic("lead-state"), 4))
    # One snapshot per event and per decay-driven stage change, none for the quiet re-arm.
    assert count_now(deployment.bootstrap, deployment.topic("lead-state")) == 4
    assert states[-1]["stage"] == "cold"
    assert states[-1]["current_score"] < 11
    assert states[-1]["rules_version"] == "fast-decay-1"


def compressed_example_events() -> list[EngagementEvent]:
    """examples/events.jsonl squeezed into the last ~12 minutes, same order and spacing ratios.

    With a 14-day half-life nothing decays across a stage boundary while the test runs,
    so the worker and the offline evaluation see exactly the same history.
    """
    lines = (ROOT / "examples" / "events.jsonl").read_bytes().splitlines()
    events = [e for e in read_events(lines) if isinstance(e, EngagementEvent)]
    first = min(e.occurred_at for e in events)
    base = int(time.time() * 1000) - 15 * 60_000
    return [
        e.model_copy(update={"occurred_at": base + (e.occurred_at - first) // 3000}) for e in events
    ]


def test_conditions_caps_fit_and_disqualification_match_the_offline_evaluation(
    deployment: Deployment, start_worker
) -> None:
    rules = load_rules(EXAMPLE_RULES)
    deployment.extra["LEADSCORE_RULES_FILE"] = str(EXAMPLE_RULES)
    start_worker()
    events = compressed_example_events()
    produce(
        deployment.bootstrap,
        deployment.topic("events"),
        [(e.contact_id.encode(), orjson.dumps(e.model_dump())) for e in events],
    )
    expected = explain(events, rules)
    want_actions = [
        (a.contact_id, a.kind, a.name, a.to_dict()["score"], a.cause_event_id, a.grade)
        for t in expected.values()
        for s in t.steps
        for a in s.applied.actions
    ]
    want_changes = {
        s.applied.change.event_id: s.applied.change.to_dict()
        for t in expected.values()
        for s in t.steps
        if s.applied.change is not None
    }

    got = values(consume(deployment.bootstrap, deployment.topic("actions"), len(want_actions)))
    changes = values(
        consume(deployment.bootstrap, deployment.topic("score-changes"), len(want_changes))
    )
    by_contact = sorted(
        (a["contact_id"], a["kind"], a["name"], a["score"], a["cause_event_id"], a["grade"])
        for a in got
    )
    assert by_contact == sorted(want_actions)
    # The behaviours the example exists to show, as they arrived through Kafka:
    assert ("cy", "disqualified", "competitor") in {(a[0], a[1], a[2]) for a in by_contact}
    assert ("bo", "threshold_crossed") not in {(a[0], a[1]) for a in by_contact}  # grade D
    assert {(a[0], a[2], a[5]) for a in by_contact if a[1] == "threshold_crossed"} == {
        ("ada", "mql", "A"),
        ("cy", "mql", "A"),
    }
    for change in changes:
        want = want_changes[change["event_id"]]
        for field in ("delta", "new_score", "reasons", "new_fit", "fit_reasons", "rules_version"):
            assert change[field] == want[field], (change["event_id"], field)
    clipped = [r for c in changes for r in c["reasons"] if r["clipped"]]
    assert [(r["rule_id"], r["cap_id"]) for r in clipped] == [("email-open", "email-weekly")] * 2
    assert count_now(deployment.bootstrap, deployment.topic("actions")) == len(want_actions)

    states = values(consume(deployment.bootstrap, deployment.topic("lead-state"), len(changes)))
    final = {s["contact_id"]: s for s in states}
    for contact, timeline in expected.items():
        assert timeline.record is not None
        state = final[contact]
        assert (state["stage"], state["disqualified"], state["fit"], state["grade"]) == (
            timeline.record.stage,
            timeline.record.disqualified,
            timeline.record.fit,
            rules.grade_for(timeline.record.fit),
        )
        assert state["rules_version"] == "acme-2026-11"


def test_new_rules_apply_to_new_events_and_the_change_is_logged(
    deployment: Deployment, start_worker
) -> None:
    first = start_worker()
    at = int(time.time() * 1000)
    events = deployment.topic("events")
    produce(deployment.bootstrap, events, [ev("v1", "max", "page_view", at, properties={})])
    consume(deployment.bootstrap, deployment.topic("lead-state"), 1)
    assert first.stop() == 0

    deployment.extra["LEADSCORE_RULES_FILE"] = str(EXAMPLE_RULES)
    second = start_worker()
    assert "rules changed from default-1 to acme-2026-11" in second.log()
    produce(
        deployment.bootstrap,
        events,
        [ev("v2", "max", "page_view", at + 1, properties={"url": "/pricing"})],
    )
    states = values(consume(deployment.bootstrap, deployment.topic("lead-state"), 2))
    assert [(s["rules_version"], s["score"]) for s in states] == [
        ("default-1", 1.0),
        ("acme-2026-11", 16.0),  # the old point is kept; the new event scores under the new rules
    ]
