"""Renders docs/operations-latency.png from Prometheus data of a real run.

    python bench/ops_plot.py --rates 50,100,200,400 --step-seconds 45

One worker on the local broker, Debian's ``prometheus`` with the shipped
config and rules (scraping every 2 s), and simulated traffic stepped through
``--rates`` events/s. Then the recording-rule style queries of the on-call
dashboard are read back with /api/v1/query_range and plotted: event→action
latency percentiles since ingest, and events scored per second.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import matplotlib
import yaml
from common import progress, record_results
from systems import Deployment, wait_http_ready
from systems import start as start_system

from tests.support.brokers import ensure_broker, stop_broker
from tests.support.processes import Process
from tests.support.prometheus import start_prometheus

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after choosing the file backend

ROOT = Path(__file__).resolve().parents[1]
PNG = ROOT / "docs" / "operations-latency.png"
WINDOW = "20s"
QUERIES = {
    f"p{int(q * 100)}": (
        f"histogram_quantile({q}, sum by (le) "
        f'(rate(leadscore_event_to_action_seconds_bucket{{since="ingest"}}[{WINDOW}])))'
    )
    for q in (0.5, 0.95, 0.99)
}
SCORED = f'sum(rate(leadscore_events_total{{outcome="scored"}}[{WINDOW}]))'


def query_range(base: str, expr: str, start: float, end: float) -> list[tuple[float, float]]:
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": "2s"})
    with urllib.request.urlopen(f"{base}/api/v1/query_range?{params}", timeout=30) as answer:
        data = json.load(answer)["data"]["result"]
    if not data:
        return []
    return [(float(t), float(v)) for t, v in data[0]["values"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="50,100,200,400", help="events/s, one step each")
    parser.add_argument("--step-seconds", type=float, default=45)
    parser.add_argument("--contacts", type=int, default=3000)
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    prometheus_bin = shutil.which("prometheus")
    if prometheus_bin is None:
        sys.exit("prometheus not found: apt-get install prometheus")

    bootstrap, started_broker = ensure_broker()
    processes: list[Process] = []
    try:
        with tempfile.TemporaryDirectory(prefix="leadscore-ops-") as tmp:
            root = Path(tmp)
            deployment = Deployment.fresh(bootstrap, root / "run")
            worker = start_system("leadscore", deployment, web=True)
            processes.append(worker)
            wait_http_ready(worker, 120)
            web = worker.web_port
            env = {**os.environ, **deployment.env}
            config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
            config["global"].update(scrape_interval="2s", evaluation_interval="2s")
            config["rule_files"] = [
                str(ROOT / "deploy" / "prometheus" / f) for f in config["rule_files"]
            ]
            config["scrape_configs"] = [
                {**job, "static_configs": [{"targets": [f"127.0.0.1:{web}"]}]}
                for job in config["scrape_configs"]
                if job["job_name"] == "leadscore-worker"
            ]
            (root / "prometheus.yml").write_text(yaml.safe_dump(config))
            prometheus, base = start_prometheus(prometheus_bin, root / "prometheus.yml", root)
            processes.append(prometheus)
            time.sleep(8)  # the first scrapes
            start = time.time()
            steps = []
            for i, rate in enumerate(rates, start=1):
                steps.append((time.time(), rate))
                simulator = subprocess.run(
                    [sys.executable, "-m", "leadscore.cli", "simulate", "--contacts",
                     str(args.contacts), "--rate", str(rate), "--duration",
                     str(args.step_seconds), "--seed", str(i), "--quiet"],
                    env=env,
                    check=True,
                )  # fmt: skip
                assert simulator.returncode == 0
                progress("steps", i, len(rates))
            time.sleep(10)
            end = time.time()
            series = {name: query_range(base, expr, start, end) for name, expr in QUERIES.items()}
            scored = query_range(base, SCORED, start, end)
    finally:
        for process in reversed(processes):
            process.stop()
        if started_broker:
            stop_broker()

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, height_ratios=[2, 1])
    for name, points in series.items():
        finite = [(t - start, v * 1000) for t, v in points if v == v]  # drop NaN (no actions)
        top.plot([t for t, _ in finite], [v for _, v in finite], label=name)
    top.set_ylabel("event → action since ingest (ms)")
    top.set_yscale("log")
    top.legend(loc="upper left")
    top.grid(True, which="both", alpha=0.3)
    bottom.plot([t - start for t, _ in scored], [v for _, v in scored], color="tab:gray")
    bottom.set_ylabel("events scored / s")
    bottom.set_xlabel("seconds into the run")
    bottom.grid(True, alpha=0.3)
    for at, rate in steps:
        for axis in (top, bottom):
            axis.axvline(at - start, color="black", alpha=0.2, linestyle="--")
        bottom.annotate(f"{rate:.0f}/s offered", (at - start + 1, 0), fontsize=8)
    fig.suptitle(
        "leadscore worker, one process, local broker: from Prometheus "
        f"(rate window {WINDOW}, buckets of leadscore_event_to_action_seconds)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(PNG, dpi=110)

    def step_figures(points: list[tuple[float, float]], at: float, until: float) -> float:
        inside = [v for t, v in points if at + 10 <= t <= until and v == v]
        return sorted(inside)[len(inside) // 2] if inside else float("nan")

    rows = [
        "| offered events/s | scored events/s | p50 ms | p95 ms | p99 ms |",
        "|---|---|---|---|---|",
    ]
    bounds = [at for at, _ in steps] + [end - 10]
    figures = []
    for (at, rate), until in zip(steps, bounds[1:], strict=True):
        row = {
            "offered": rate,
            "scored": step_figures(scored, at, until),
            **{name: step_figures(points, at, until) * 1000 for name, points in series.items()},
        }
        figures.append(row)
        latency = " | ".join(f"{row[name]:.1f}" for name in QUERIES)
        rows.append(f"| {rate:.0f} | {row['scored']:.0f} | {latency} |")
    rows.append(f"\nMedians over each step (first 10 s skipped); plot: {PNG.relative_to(ROOT)}")
    record_results(
        "ops-latency",
        "Event to action latency from Prometheus",
        " ".join(["python bench/ops_plot.py", *sys.argv[1:]]),
        {"steps": figures},
        "\n".join(rows),
    )


if __name__ == "__main__":
    main()
