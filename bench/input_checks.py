"""Cost of the per-event input checks: decode and score, this tree against a baseline commit.

    .venv/bin/python bench/input_checks.py --baseline c55dc60 --events 100000 --repeat 5

Both sides run the same seeded events (the benchmark workload's traffic model,
as JSON records) through ``decode_event`` and ``apply_event`` in one process
each, alternated ``--repeat`` times: the baseline from a temporary git worktree
of ``--baseline``, this tree as it is. Only the pure per-event path is timed:
the Kafka edge is the same on both sides. Prints µs per event and the ratio,
and records them in bench/results/<date>-input-checks.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Run by each side's interpreter with that side's leadscore first on sys.path.
TIMED = r"""
import inspect, sys, time, orjson
from leadscore.codecs.events import decode_event
from leadscore.scoring import apply_event, load_rules
from leadscore.simulate import TrafficModel

events, seed = int(sys.argv[1]), int(sys.argv[2])
model = TrafficModel(events // 10, seed=seed, prefix="b-", seeded_ids=True)
start = int(time.time() * 1000) - events * 10
records = []
for i in range(events):
    event = model.next_event(start + i * 10)
    records.append((event["contact_id"].encode(), orjson.dumps(event)))
rules = load_rules(None)
checked = "max_ahead_ms" in inspect.signature(apply_event).parameters
extra = (300_000,) if checked else ()
leads = {}
now = int(time.time() * 1000)
began = time.perf_counter()
for key, value in records:
    event = decode_event(key, value, 262_144, 65_536)
    applied = apply_event(leads.get(key), event, rules, now, *extra)
    if applied.status == "scored":
        leads[key] = applied.record
print(orjson.dumps({"seconds": time.perf_counter() - began, "leads": len(leads)}).decode())
"""


def run(source: Path, events: int, seed: int) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(source)!r})\n{TIMED}",
         str(events), str(seed)],
        capture_output=True, text=True, check=True, cwd=source,
    )  # fmt: skip
    figures: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="git revision to compare with")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        baseline = Path(tmp) / "baseline"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(baseline), args.baseline],
            cwd=ROOT, check=True, capture_output=True,
        )  # fmt: skip
        try:
            times: dict[str, list[float]] = {"baseline": [], "this tree": []}
            for i in range(args.repeat):
                for name, source in (("baseline", baseline), ("this tree", ROOT)):
                    figures = run(source, args.events, seed=7)
                    times[name].append(figures["seconds"] / args.events * 1e6)
                    print(f"round {i + 1}/{args.repeat} {name}: {times[name][-1]:.1f} µs/event")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(baseline)], cwd=ROOT)
    base, mine = (statistics.median(times[k]) for k in ("baseline", "this tree"))
    revision = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    lines = [
        f"# Input checks: decode + score per event ({time.strftime('%Y-%m-%d')})",
        "",
        f"`bench/input_checks.py --baseline {args.baseline} --events {args.events} "
        f"--repeat {args.repeat}` on {machine}; medians of alternated rounds.",
        "",
        "| side | µs per event (median) | min | max |",
        "|---|---|---|---|",
        *(
            f"| {name} ({args.baseline if name == 'baseline' else revision}) | "
            f"{statistics.median(v):.1f} | {min(v):.1f} | {max(v):.1f} |"
            for name, v in times.items()
        ),
        "",
        f"This tree takes **{mine / base:.3f}x** the baseline's time per event.",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    out = ROOT / "bench" / "results" / f"{time.strftime('%Y-%m-%d')}-input-checks"
    out.with_suffix(".md").write_text(report)
    out.with_suffix(".json").write_text(
        json.dumps({"baseline": args.baseline, "revision": revision, "events": args.events,
                    "us_per_event": times, "ratio": mine / base, "machine": machine}, indent=2)
    )  # fmt: skip


if __name__ == "__main__":
    main()
