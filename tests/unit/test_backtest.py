"""Backtests (issue 24): the replay reproduces the worker's scores, and the report's
figures are what they say."""

from __future__ import annotations

import math
import random
from pathlib import Path

import orjson
from click.testing import CliRunner

from leadscore.backtest import Lead, evaluate, replay, replay_all, shards_of
from leadscore.cli import main
from leadscore.scoring import EngagementEvent, load_rules
from leadscore.simulate import TrafficModel
from leadscore.step.batch import Input, process
from leadscore.step.wheel import Timers
from leadscore.stream.partitioning import key_partition
from tests.unit.test_step import ENCODERS, LIMITS, PARTITIONS

RULES = load_rules()
T0 = 1_790_000_000_000
HOUR = 3_600_000


def archive(contacts: int, events: int, seed: int) -> list[EngagementEvent]:
    """A seeded workload over ~10 days: events of buying contacts come more often."""
    model = TrafficModel(contacts, seed=seed, prefix=f"b{seed}-", seeded_ids=True, hot_share=0.05)
    return [
        EngagementEvent.model_validate(body)
        for body in model.events(events, T0, spacing_ms=10 * 24 * HOUR // events)
    ]


def test_a_backtest_of_the_live_rules_reproduces_the_workers_scores() -> None:
    events = archive(200, 3_000, seed=3)
    leads = {lead.contact_id: lead.record for lead in replay(events, RULES, None)}
    records = [
        Input("events", key_partition(e.contact_id.encode(), PARTITIONS), n, e.contact_id.encode(),
              orjson.dumps(e.model_dump(mode="json")), e.occurred_at)
        for n, e in enumerate(events)
    ]  # fmt: skip
    stored: dict[bytes, object] = {}
    now = events[-1].occurred_at + 1000
    for i in range(0, len(records), 250):  # the worker's step, batch after batch
        effects = process(
            records[i : i + 250], lambda _p, k: stored.get(k), Timers(10_000), RULES, now,
            LIMITS, ENCODERS,
        )  # fmt: skip
        for key, (_, record) in effects.writes.items():
            stored[key] = record
    assert len(leads) == len(stored)
    for contact, record in leads.items():
        live = stored[contact.encode()]
        assert record is not None
        assert (record.event_count, record.ref_ms) == (live.event_count, live.ref_ms)  # type: ignore[attr-defined]
        assert math.isclose(record.score, live.score, rel_tol=1e-12, abs_tol=1e-12)  # type: ignore[attr-defined]


def test_more_processes_and_shards_give_the_same_leads() -> None:
    events = archive(150, 1_500, seed=5)
    lines = [orjson.dumps(e.model_dump(mode="json")) for e in events] + [b"{broken", b"{}"]
    shards, unkeyed = shards_of(lines, 3)
    assert unkeyed == 2
    one, bad = replay_all(shards, RULES, None, 1)
    two, _ = replay_all(shards_of(lines, 8)[0], RULES, None, 2)
    assert bad == 0
    alone = {lead.contact_id: (lead.peak, lead.crossings) for lead in replay(events, RULES, None)}
    assert {lead.contact_id: (lead.peak, lead.crossings) for lead in one} == alone
    assert {lead.contact_id: (lead.peak, lead.crossings) for lead in two} == alone


def test_lift_precision_and_recall_are_counted_as_said() -> None:
    leads = [Lead(f"c{i}", peak=float(100 - i)) for i in range(20)]
    leads[0].crossings = [("mql", T0)]  # crossed before its outcome: found
    leads[1].crossings = [("mql", T0 + 5 * HOUR)]  # crossed after its outcome: not found
    leads[2].crossings = [("mql", T0)]  # no outcome
    outcomes = {"c0": T0 + HOUR, "c1": T0 + HOUR, "c15": T0}
    e = evaluate(leads, outcomes, RULES)
    assert (e.contacts, e.outcomes) == (20, 3)
    top = e.deciles[0]  # c0 and c1: both had an outcome; the overall rate is 3/20
    assert (top.contacts, top.outcomes) == (2, 2)
    assert math.isclose(top.lift, (2 / 2) / (3 / 20))
    (mql,) = e.found
    assert (mql.crossed, mql.found) == (3, 1)
    assert math.isclose(mql.precision, 1 / 3)
    assert math.isclose(mql.recall, 1 / 3)
    assert e.bounds[0] == (7, round(100 * 2 ** (-7 / RULES.half_life_days), 4))


def test_on_outcomes_drawn_from_the_scores_the_top_decile_lifts_and_the_bottom_does_not(
    tmp_path: Path,
) -> None:
    """A seeded workload whose outcomes are drawn with a chance that grows with a lead's
    peak score: the report ranks them so, and the CLI writes it with its plot."""
    events = archive(1_000, 12_000, seed=11)
    peaks = {lead.contact_id: lead.peak for lead in replay(events, RULES, None)}
    rng = random.Random(11)
    top = max(peaks.values())
    outcomes = [
        {"event_id": f"o-{c}", "contact_id": c, "type": "opportunity_created",
         "occurred_at": T0 + 11 * 24 * HOUR}
        for c, peak in sorted(peaks.items())
        if rng.random() < 0.02 + 0.6 * max(peak, 0) / top
    ]  # fmt: skip
    (tmp_path / "events.jsonl").write_bytes(
        b"\n".join(orjson.dumps(e.model_dump(mode="json")) for e in events)
    )
    (tmp_path / "outcomes.jsonl").write_bytes(b"\n".join(orjson.dumps(o) for o in outcomes))
    result = CliRunner().invoke(
        main,
        [
            "backtest", "--rules", str(Path("leadscore/rules/default.yaml")),
            "--events", str(tmp_path / "events.jsonl"),
            "--outcomes", str(tmp_path / "outcomes.jsonl"),
            "--capacity", "30", "--workers", "2", "--out", str(tmp_path / "report"),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = (tmp_path / "report" / "report.md").read_text()
    assert (tmp_path / "report" / "report.png").stat().st_size > 10_000
    rows = [
        line
        for line in report.splitlines()
        if line.startswith("| 1 |") or line.startswith("| 10 |")
    ]
    top_lift = float(rows[0].split("|")[4])
    bottom_lift = float(rows[1].split("|")[4])
    assert top_lift > 2.0, report
    assert bottom_lift < 1.0, report
    assert "mql crossings per week" in report


def test_the_ci_script_passes_a_small_change_and_fails_a_swing(tmp_path: Path) -> None:
    """examples/ci/rules-change.sh: exit 0 when crossings per week stay within the swing,
    2 when a rules change moves them more."""
    import os
    import shutil
    import subprocess
    import sys

    events = archive(400, 6_000, seed=13)
    path = tmp_path / "archive.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(e.model_dump(mode="json")) for e in events))
    base = Path("leadscore/rules/default.yaml").resolve()
    text = base.read_text()
    same = tmp_path / "same.yaml"
    same.write_text(text.replace('version: "default-1"', 'version: "default-2"'))
    lower = tmp_path / "lower.yaml"  # mql at 40 instead of 60: many more crossings
    lower.write_text(
        text.replace(
            "{name: mql, score: 60, hysteresis: 10}", "{name: mql, score: 40, hysteresis: 10}"
        )
    )
    assert lower.read_text() != text
    script = Path("examples/ci/rules-change.sh").resolve()
    leadscore = shutil.which("leadscore", path=str(Path(sys.executable).parent))
    env = {**os.environ, "LEADSCORE": str(leadscore)}

    def run(new: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", str(script), str(base), str(new), str(path), "0.1"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    ok = run(same)
    assert ok.returncode == 0, ok.stderr
    assert "none" in ok.stdout  # rules compare: only the version changed
    assert (tmp_path / "backtest" / "report.json").exists()
    swung = run(lower)
    assert swung.returncode == 2, swung.stderr
    assert "more than the allowed 10%" in swung.stderr
