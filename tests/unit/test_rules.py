"""Rules files: defaults load, and mistakes are reported with file and line."""

from __future__ import annotations

import pytest

from leadscore.errors import RulesError
from leadscore.scoring import load_rules, parse_rules


def test_default_rules_are_the_seed_defaults() -> None:
    rules = load_rules()
    assert {r.event_type: r.points for r in rules.rules} == {
        "page_view": 1,
        "email_open": 3,
        "download": 10,
        "signup": 20,
        "demo_request": 30,
    }
    assert [rules.stage_for(s) for s in (0, 10.99, 11, 30.9, 31, 59.99, 60)] == [
        "cold",
        "cold",
        "warm",
        "warm",
        "hot",
        "hot",
        "qualified",
    ]
    assert [(t.name, t.score, t.hysteresis) for t in rules.thresholds] == [("mql", 60, 10)]
    assert rules.half_life_days == 30
    assert rules.velocity_window_hours == 24
    assert rules.dedupe_horizon_days == 7


BASE = """version: t
rules:
  - {id: a, event_type: page_view, points: 1}
stages:
  - {name: cold, min_score: 0}
"""


@pytest.mark.parametrize(
    ("extra", "line", "fragment"),
    [
        ("thresholds:\n  - {name: mql, score: 5, hysteresis: 9}\n", 7, "could never re-arm"),
        ("colour: blue\n", 6, "unknown field"),
        ("half_life_days: -3\n", 6, "greater than 0"),
    ],
)
def test_problems_name_the_line(extra: str, line: int, fragment: str) -> None:
    with pytest.raises(RulesError) as info:
        parse_rules(BASE + extra, "my-rules.yaml")
    problem = info.value.problems[0]
    assert problem.line == line
    assert fragment in problem.message
    assert str(problem).startswith(f"my-rules.yaml:{line}")


def test_unsorted_stages_and_duplicate_ids_are_rejected() -> None:
    text = """version: t
rules:
  - {id: a, event_type: page_view, points: 1}
  - {id: a, event_type: signup, points: 2}
stages:
  - {name: warm, min_score: 11}
  - {name: cold, min_score: 0}
"""
    with pytest.raises(RulesError, match="the id 'a' is already used"):
        parse_rules(text)


def test_broken_yaml_reports_its_line() -> None:
    with pytest.raises(RulesError) as info:
        parse_rules("version: t\nrules: [\n  - oops: {\n", "bad.yaml")
    assert info.value.problems[0].line is not None
    assert "not valid YAML" in info.value.problems[0].message
