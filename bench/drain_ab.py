"""One worker's drain throughput, this tree against a baseline commit, runs alternated.

    .venv/bin/python bench/drain_ab.py --baseline ad33e41 --events 100000 --repeat 4

A seeded workload (bench/workload.py, ``--events`` events for a tenth as many
contacts) is produced once; then a worker of each tree drains it into a fresh
deployment, alternately (ABBA...), ``--repeat`` times each: the baseline from a
temporary git worktree of ``--baseline``, this tree as it is (each worker runs
with its tree first on PYTHONPATH). Throughput is taken as in bench.py (output
records over the span of their broker append times). Prints the runs, the
medians and their ratio, and records them in bench/results/<date>-drain-ab.{md,json}.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import record_results
from systems import Deployment, drain, start
from workload import DAY_MS, Workload, produce

from tests.support.brokers import ensure_broker, stop_broker

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, help="a commit of this repository")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    bootstrap, started_broker = ensure_broker()
    runs: dict[str, list[float]] = {"baseline": [], "this tree": []}
    try:
        with tempfile.TemporaryDirectory(prefix="leadscore-drain-ab-") as tmp:
            root = Path(tmp)
            baseline = root / "baseline"
            subprocess.run(
                [
                    "git",
                    "-C",
                    str(ROOT),
                    "worktree",
                    "add",
                    "--detach",
                    str(baseline),
                    args.baseline,
                ],
                check=True,
                capture_output=True,
            )
            trees = {"baseline": baseline, "this tree": ROOT}
            try:
                workload = Deployment.fresh(bootstrap, root / "workload")
                produce(
                    bootstrap,
                    workload.events,
                    Workload(args.events // 10, args.seed, "ab-"),
                    args.events,
                    7 * DAY_MS,
                )
                for i in range(args.repeat):
                    order = list(trees) if i % 2 == 0 else list(reversed(trees))
                    for side in order:
                        os.environ["PYTHONPATH"] = str(trees[side])
                        deployment = Deployment.fresh(
                            bootstrap, root / f"run-{i}-{side[0]}", workload.events
                        )
                        running = start("leadscore", deployment)
                        result = drain(bootstrap, deployment.counted, args.events, 900, running)
                        running.finish()
                        runs[side].append(result.rate)
                        print(
                            f"\nrun {i + 1}/{args.repeat}, {side}: {result.rate:,.0f} events/s",
                            file=sys.stderr,
                        )
                        deployment.delete_topics()
                        shutil.rmtree(deployment.root, ignore_errors=True)
                workload.delete_topics()
            finally:
                os.environ.pop("PYTHONPATH", None)
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)],
                    check=False,
                    capture_output=True,
                )
    finally:
        if started_broker:
            stop_broker()
    medians = {side: statistics.median(rates) for side, rates in runs.items()}
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    rows = [
        "| side | median events/s | runs (in order) |",
        "|---|---|---|",
        *(
            f"| {side} | {medians[side]:,.0f} | {', '.join(f'{r:,.0f}' for r in rates)} |"
            for side, rates in runs.items()
        ),
        "",
        f"this tree (HEAD {head}, with any uncommitted changes) / baseline {args.baseline}: "
        f"**{medians['this tree'] / medians['baseline']:.3f}**; {args.events:,} events, "
        f"{args.events // 10:,} contacts, runs alternated",
    ]
    record_results(
        "drain-ab",
        "Drain throughput, this tree against a baseline commit",
        " ".join(["python bench/drain_ab.py", *sys.argv[1:]]),
        {"baseline": args.baseline, "head": head, "events": args.events, "runs": runs},
        "\n".join(rows),
    )


if __name__ == "__main__":
    main()
