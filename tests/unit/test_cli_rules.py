"""`leadscore rules check` and `leadscore rules explain` on the files shipped in the repo."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from leadscore.cli import main

ROOT = Path(__file__).resolve().parents[2]
RULES = str(ROOT / "examples" / "rules.yaml")
EVENTS = str(ROOT / "examples" / "events.jsonl")


def test_rules_check_accepts_the_example_and_names_file_and_line_of_mistakes(tmp_path) -> None:
    runner = CliRunner()
    ok = runner.invoke(main, ["rules", "check", RULES])
    assert ok.exit_code == 0, ok.output
    assert "ok (version acme-2026-11" in ok.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        Path(RULES).read_text().replace("min_score: 31", "min_score: 5"), encoding="utf-8"
    )
    result = runner.invoke(main, ["rules", "check", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:" in result.stderr
    assert "the bands overlap" in result.stderr


def test_rules_explain_prints_a_timeline_with_reasons_caps_fit_and_decay() -> None:
    result = CliRunner().invoke(
        main, ["rules", "explain", RULES, "--events", EVENTS, "--until", "2026-12-15T00:00:00Z"]
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    for contact in ("ada", "bo", "cy", "dee"):
        assert f"\ncontact {contact}\n" in out
    assert "pricing-page +15" in out
    assert "email-open +0, 3 clipped by cap email-weekly" in out
    assert "fit 0 -> 85 (senior-title +30; mid-market +25; target-industry +20" in out
    assert "disqualified: disqualified by rule competitor" in out
    assert "threshold mql crossed" in out
    assert "grade A" in out
    assert "stage_changed: stage qualified -> hot [decay, no event]" in out
    assert "duplicate event id, ignored" in out
    assert "unsubscribe -20" in out
    assert "events.jsonl:33: skipped: contact_id: Field required" in result.stderr


def test_rules_explain_json_lines_carry_the_records() -> None:
    import orjson

    result = CliRunner().invoke(
        main, ["rules", "explain", RULES, "--events", EVENTS, "--contact", "bo", "--json"]
    )
    assert result.exit_code == 0
    steps = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert {s["contact_id"] for s in steps} == {"bo"}
    statuses = [s["status"] for s in steps]
    assert statuses.count("duplicate") == 1
    clipped = [r for s in steps if s["change"] for r in s["change"]["reasons"] if r["clipped"]]
    assert len(clipped) == 2


def test_rules_compare_says_points_only_or_forward_and_why(tmp_path) -> None:
    text = Path(RULES).read_text()
    points = tmp_path / "points.yaml"
    points.write_text(
        text.replace("event_type: demo_request, points: 30", "event_type: demo_request, points: 40")
    )
    decay = tmp_path / "decay.yaml"
    decay.write_text(text.replace("half_life_days: 14 ", "half_life_days: 21 "))
    runner = CliRunner()
    said = runner.invoke(main, ["rules", "compare", RULES, str(points)])
    assert said.exit_code == 0, said.output
    assert "points_only" in said.stdout
    assert "rule demo-request: 30 -> 40 points" in said.stdout
    forward = runner.invoke(main, ["rules", "compare", RULES, str(decay)]).stdout
    assert "forward" in forward
    assert "half_life_days changed" in forward
