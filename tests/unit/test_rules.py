"""Rules files: defaults load, and mistakes are reported with file and line."""

from __future__ import annotations

from pathlib import Path

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


FULL = """version: t
rules:
  - {id: view, event_type: page_view, points: 1}
  - id: pricing
    event_type: page_view
    points: 15
    when:
      - {property: url, REPLACE_CONDITION}
stages:
  - {name: cold, min_score: 0}
  - {name: warm, min_score: 11}
"""


@pytest.mark.parametrize(
    ("condition", "fragment"),
    [
        ("regex: '(unclosed'", "the regex '(unclosed' is not valid"),
        ("prefix: /a, suffix: /b", "has several tests (prefix, suffix)"),
        ("starts_with: /pricing", "unknown field"),
        ("gt: 10, lt: 5", "the range on 'url' is empty"),
        ("prefix: ''", "an empty prefix matches everything"),
        ("case_sensitive: true", "needs a test"),
    ],
)
def test_bad_conditions_are_explained_at_their_line(condition: str, fragment: str) -> None:
    with pytest.raises(RulesError) as info:
        parse_rules(FULL.replace("REPLACE_CONDITION", condition), "r.yaml")
    (problem,) = info.value.problems
    assert problem.line == 8
    assert fragment in problem.message


GOOD = FULL.replace("REPLACE_CONDITION", "prefix: /pricing")


@pytest.mark.parametrize(
    ("extra", "line", "fragment"),
    [
        (
            "thresholds: [{name: mql, score: 60, hysteresis: 10, min_grade: B}]\n",
            12,
            "needs grade 'B', which is not a fit grade (none are defined",
        ),
        (
            "caps: [{id: c, rules: [view, nope], max_points: 5, window_days: 1}]\n",
            12,
            "cap 'c' names 'nope', which is not a rule",
        ),
        (
            "rules_extra: 1\n",
            12,
            "unknown field",
        ),
        (
            "disqualify:\n  - {id: everyone}\n",
            13,
            "would match every event",
        ),
        (
            "fit:\n  grades:\n    - {name: A, min_fit: 50}\n    - {name: B, min_fit: 20}\n",
            15,
            "list grades from the worst",
        ),
        (
            "requalify:\n  - {id: view, event_type: requalify}\n",
            13,
            "the id 'view' is already used in rules",
        ),
    ],
)
def test_cross_references_are_checked_with_lines(extra: str, line: int, fragment: str) -> None:
    with pytest.raises(RulesError) as info:
        parse_rules(GOOD + extra, "r.yaml")
    problem = info.value.problems[0]
    assert fragment in problem.message
    assert problem.line == line


def test_overlapping_stages_and_replacing_another_type_are_reported_together() -> None:
    text = GOOD.replace("min_score: 11", "min_score: 0").replace(
        "points: 15\n", "points: 15\n    replaces: [view, signup]\n"
    )
    with pytest.raises(RulesError) as info:
        parse_rules(text, "r.yaml")
    messages = {p.line: p.message for p in info.value.problems}
    assert "the bands overlap" in messages[12]
    assert "replaces 'signup', which is not a rule" in messages[7]


def test_the_shipped_example_is_valid_and_complete() -> None:
    rules = load_rules(Path(__file__).resolve().parents[2] / "examples" / "rules.yaml")
    assert rules.caps
    assert rules.fit.rules
    assert rules.fit.grades
    assert rules.disqualify
    assert rules.requalify
    assert any(r.when for r in rules.rules)
    assert any(r.replaces for r in rules.rules)
    assert any(r.points < 0 for r in rules.rules)
    assert any(t.min_grade for t in rules.thresholds)


def test_a_copy_with_changes_rebuilds_what_is_derived_from_the_fields() -> None:
    rules = load_rules(Path(__file__).resolve().parents[2] / "examples" / "rules.yaml")
    uncapped = rules.model_copy(update={"caps": ()})
    assert rules.cap_of("email-open") is not None
    assert uncapped.cap_of("email-open") is None
    default = load_rules()
    steeper = default.model_copy(
        update={"rules": (default.rules[0].model_copy(update={"points": -7}),)}
    )
    assert [r.points for r in steeper.matching("page_view", {})] == [-7]
    with pytest.raises(ValueError, match="the bands overlap"):
        rules.model_copy(update={"stages": (rules.stages[1], rules.stages[0])})


@pytest.mark.parametrize(
    ("accounts", "fragment"),
    [
        (
            "{stages: [{name: a, min_score: 0}, {name: b, min_score: 0}]}",
            "account stage 'b' starts at 0, not above 'a'",
        ),
        (
            "{stages: [{name: a, min_score: 0}, {name: a, min_score: 5}]}",
            "account stage 'a' is listed twice",
        ),
        (
            "{thresholds: [{name: surge, score: 10, hysteresis: 1}]}",
            "account thresholds need account stages",
        ),
        (
            "{stages: [{name: a, min_score: 0}], thresholds: "
            "[{name: t, score: 10, hysteresis: 1, min_grade: A}]}",
            "accounts have no fit grade",
        ),
        (
            "{stages: [{name: a, min_score: 0}], persona_trait: department}",
            "persona_trait 'department' is not a trait the fit rules read",
        ),
    ],
)
def test_account_rules_are_checked(accounts: str, fragment: str) -> None:
    text = "version: v\nrules: []\nstages: [{name: cold, min_score: 0}]\naccounts: " + accounts
    with pytest.raises(RulesError) as raised:
        parse_rules(text)
    assert fragment in str(raised.value)
