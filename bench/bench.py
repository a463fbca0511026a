"""leadscore against the practical limit and a peer, measured side by side in one run.

    python bench/bench.py --size smoke|standard|large [--repeat N] [--results DIR]

1. A seeded workload (bench/workload.py) is produced once to a topic with 6
   partitions, so producing is not what is measured.
2. Drain: each system (leadscore worker, limit loop, Quix Streams peer) reads
   that topic from the start in a fresh deployment, ``repeat`` times, runs
   interleaved. Throughput is the count of its per-event output records over
   the span of their broker append times. Peak RSS (VmHWM) and the size of the
   state directory after a clean stop are taken each run.
3. Recovery: after leadscore's last drain its RocksDB directory is wiped and a
   worker started on it; the time until /readyz answers is the rebuild from the
   changelog.
4. Latency: at 25%, 50% and 75% of leadscore's median drain rate, each system
   in a fresh deployment gets live events at that rate; event -> output
   latency is taken from the send to the moment a consumer sees the action
   (the limit loop: its per-event record).
5. Report: bench/results/<date>-<size>.md, .json and -latency.png.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import shown, spread
from systems import (
    EXACTLY_ONCE,
    PEER_PYTHON,
    SYSTEMS,
    Deployment,
    changelog_records,
    dir_bytes,
    drain,
    offer,
    start,
    table_bytes,
    wait_http_ready,
    wait_ready,
)
from workload import DAY_MS, SIZES, Workload, produce

from tests.support.brokers import ensure_broker, stop_broker

HERE = Path(__file__).resolve().parent
LOADS = (0.25, 0.50, 0.75)
# The seed system this project replaces, from its own operational notes (not measured here).
SEED: dict[str, Any] = {
    "system": "seed: Node/Bull/MongoDB scorer",
    "rate": 200.0,  # events/s, a configured rate limit
    "latency": "8-10 s per event",
}
#: Issue 20's targets (the limit loop's ratio is reported, not a target).
TARGETS = {
    "throughput_vs_peer": 1.0,
    "exactly_once_rate": 2000.0,
    "p99_at_half_vs_limit": 2.0,
    "p99_at_three_quarters_s": 0.250,
    "rss_bytes": 1 << 30,
    "state_bytes_per_lead": 400,
    "recovery_s_per_million_leads": 60.0,
}
DRAINED = SYSTEMS + EXACTLY_ONCE


def say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    mem = next(
        int(line.split()[1]) * 1024
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {"cpus": os.cpu_count(), "memory_bytes": mem, "cpu": model, "os": platform.platform()}


def versions() -> dict[str, str]:
    import confluent_kafka

    found = {"python": platform.python_version()}
    for package in ("leadscore", "faust-streaming", "aiokafka", "confluent-kafka", "rocksdict"):
        found[package] = importlib.metadata.version(package)
    found["librdkafka"] = confluent_kafka.libversion()[0]
    peer = subprocess.run(
        [
            str(PEER_PYTHON),
            "-c",
            "import quixstreams, confluent_kafka; "
            "print(quixstreams.__version__, confluent_kafka.version())",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    found["quixstreams (peer)"] = peer[0]
    found["confluent-kafka (peer)"] = peer[1]
    status = subprocess.run(
        [str(HERE.parent / "deploy" / "kafka-local" / "kafka-local"), "status"],
        capture_output=True,
        text=True,
    )
    local = re.search(r"Kafka ([0-9][^,) ]*)", status.stdout + status.stderr)
    found["kafka (kafka-local)"] = local.group(1) if local else "unknown"
    return found


def drain_runs(
    bootstrap: str,
    root: Path,
    topic: str,
    expected: int,
    leads: int,
    repeat: int,
    systems: tuple[str, ...],
) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
    recovery: dict[str, float] = {}
    for i in range(repeat):
        order = systems if i % 2 == 0 else tuple(reversed(systems))
        for system in order:
            say(f"drain {i + 1}/{repeat}: {system}")
            deployment = Deployment.fresh(bootstrap, root / f"{system}-{i}", topic)
            running = start(system, deployment)
            timeout = max(300.0, expected / 200)
            result = drain(bootstrap, deployment.counted, expected, timeout, running)
            rss = running.finish()
            state = dir_bytes(running.state_dir) if running.state_dir else 0
            run: dict[str, Any] = {
                "rate": result.rate,
                "seconds": result.seconds,
                "rss": rss,
                "state": state,
            }
            if system.startswith("leadscore") and running.state_dir:
                run["tables"] = table_bytes(running.state_dir)
            runs[system].append(run)
            say(f"{system}: {result.rate:,.0f} events/s, peak RSS {rss / 2**20:,.0f} MiB")
            if system == "leadscore" and i == repeat - 1:
                recovery = recover(deployment, leads)
            deployment.delete_topics()
            shutil.rmtree(deployment.root, ignore_errors=True)
    return {"runs": runs, "recovery": recovery}


def recover(deployment: Deployment, leads: int) -> dict[str, float]:
    """Wipe the worker's RocksDB directory and time the rebuild from the changelog."""
    state_dir = Path(deployment.env["LEADSCORE_DATA_DIR"])
    for table_dir in state_dir.glob("v*"):
        shutil.rmtree(table_dir)
    records = changelog_records(deployment.bootstrap, deployment.group)
    say(f"recovery: {leads:,} leads, {records:,} changelog records, state wiped")
    running = start("leadscore", deployment, web=True)
    seconds = wait_http_ready(running, timeout=max(600.0, records / 500))
    rss = running.finish()
    return {
        "leads": leads,
        "changelog_records": records,
        "seconds": seconds,
        "seconds_per_million_leads": seconds / (leads / 1e6),
        "rss": rss,
    }


def latency_runs(
    bootstrap: str, root: Path, max_rate: float, seconds: float, seed: int
) -> list[dict[str, Any]]:
    steps = []
    for load in LOADS:
        rate = max(1.0, load * max_rate)
        for system in SYSTEMS:
            say(f"latency at {load:.0%} ({rate:,.0f} events/s): {system}")
            deployment = Deployment.fresh(bootstrap, root / f"live-{system}-{load}")
            running = start(system, deployment)
            wait_ready(running, deployment)
            latency = offer(system, deployment, rate, seconds, seed)
            running.finish()
            deployment.delete_topics()
            shutil.rmtree(deployment.root, ignore_errors=True)
            steps.append({"system": system, "load": load, "rate": rate, **latency.summary()})
    return steps


def ms(x: float) -> str:
    return f"{x * 1000:,.1f}"


def report(size: str, command: str, figures: dict[str, Any], results: Path, started: float) -> None:
    now = datetime.now(tz=UTC)
    runs = figures["drain"]["runs"]
    drained = tuple(s for s in DRAINED if s in runs)
    rates = {s: spread([r["rate"] for r in runs[s]]) for s in drained}
    rss = {s: spread([r["rss"] / 2**20 for r in runs[s]]) for s in drained}
    leads = figures["workload"]["leads"]
    per_lead = {
        s: spread([r["state"] / leads for r in runs[s]]) for s in drained if runs[s][0]["state"]
    }
    ratios = {
        "leadscore/limit": rates["leadscore"]["median"] / rates["limit"]["median"],
        "leadscore/peer": rates["leadscore"]["median"] / rates["peer"]["median"],
    }
    eos = "leadscore-eos" in rates and "peer-eos" in rates
    if eos:
        ratios["leadscore-eos/peer-eos"] = (
            rates["leadscore-eos"]["median"] / rates["peer-eos"]["median"]
        )
    steps = figures["latency"]
    at_half = {s["system"]: s for s in steps if s["load"] == 0.5}
    at_three_quarters = {s["system"]: s for s in steps if s["load"] == 0.75}
    p99_ratio = at_half["leadscore"]["p99"] / at_half["limit"]["p99"]
    recovery = figures["drain"]["recovery"]
    recovered_per_million = recovery["seconds_per_million_leads"]
    figures.update(rates=rates, ratios=ratios, p99_at_half_vs_limit=p99_ratio)

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    w = figures["workload"]
    lines = [
        f"# Benchmark ({size}), {now:%Y-%m-%d %H:%M} UTC",
        "",
        f"`{command}`: {w['events']:,} events, {leads:,} contacts, 6 partitions, "
        f"drain runs per system: {len(runs['leadscore'])}, wall time "
        f"{(time.monotonic() - started) / 60:,.0f} min.",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in figures["machine"].items()),
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in figures["versions"].items()),
        "",
        "## Drain throughput (one process, pre-produced topic; min / median / max)",
        "",
        "| system | events/s | x limit | peak RSS MiB | state bytes/lead |",
        "|---|---|---|---|---|",
    ]
    for s in drained:
        lines.append(
            f"| {s} | {shown(rates[s], ',.0f')} | "
            f"{rates[s]['median'] / rates['limit']['median']:.3f} | {shown(rss[s], ',.0f')} | "
            + (shown(per_lead[s], ",.0f") if s in per_lead else "no state")
            + " |"
        )
    tables = runs["leadscore"][-1].get("tables", {})
    lines += [
        f"| {SEED['system']} (documented, not run) | {SEED['rate']:,.0f} (rate limit) | "
        f"{SEED['rate'] / rates['limit']['median']:.3f} | | |",
        "",
        "leadscore's state by table after its last run, bytes per lead: "
        + ", ".join(f"{t} {b / leads:,.0f}" for t, b in sorted(tables.items(), key=lambda x: -x[1]))
        + " (RocksDB directories after a clean stop: SST files, logs, manifests).",
        "",
        "## Latency: event sent -> action seen by a consumer (ms)",
        "",
        "| load | offered events/s | system | outputs | p50 | p95 | p99 | max |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in steps:
        lines.append(
            f"| {s['load']:.0%} | {s['offered']:,.0f} | {s['system']} | {s['n']:,} | "
            f"{ms(s['p50'])} | {ms(s['p95'])} | {ms(s['p99'])} | {ms(s['max'])} |"
        )
    lines += [
        f"| any | {SEED['rate']:,.0f} | {SEED['system']} (documented) | | | | "
        f"{SEED['latency']} | |",
        "",
        "## Recovery (leadscore, RocksDB directory wiped, rebuilt from the changelog)",
        "",
        f"{recovery['leads']:,} leads, {recovery['changelog_records']:,} changelog records: "
        f"ready after **{recovery['seconds']:,.1f} s**, "
        f"{recovery['seconds_per_million_leads']:,.0f} s per million leads "
        f"(peak RSS {recovery['rss'] / 2**20:,.0f} MiB).",
        "",
        "## Targets",
        "",
        "| target | measured | |",
        "|---|---|---|",
        f"| at_least_once drain >= 1.0 x peer | {ratios['leadscore/peer']:.3f} | "
        f"{verdict(ratios['leadscore/peer'] >= TARGETS['throughput_vs_peer'])} |",
        (
            f"| exactly_once drain >= 2,000 events/s | {rates['leadscore-eos']['median']:,.0f} "
            f"({ratios['leadscore-eos/peer-eos']:.3f} x the peer's exactly-once) | "
            f"{verdict(rates['leadscore-eos']['median'] >= TARGETS['exactly_once_rate'])} |"
            if eos
            else "| exactly_once drain >= 2,000 events/s | not drained in this run | |"
        ),
        f"| p99 at 75% <= 250 ms | {ms(at_three_quarters['leadscore']['p99'])} ms | "
        f"{verdict(at_three_quarters['leadscore']['p99'] <= TARGETS['p99_at_three_quarters_s'])} |",
        f"| p99 at 50% <= 2 x limit's p99 | {p99_ratio:.2f} x "
        f"({ms(at_half['leadscore']['p99'])} vs {ms(at_half['limit']['p99'])} ms) | "
        f"{verdict(p99_ratio <= TARGETS['p99_at_half_vs_limit'])} |",
        f"| peak RSS <= 1 GiB | {rss['leadscore']['max']:,.0f} MiB | "
        f"{verdict(rss['leadscore']['max'] * 2**20 <= TARGETS['rss_bytes'])} |",
        f"| state <= 400 bytes/lead | {per_lead['leadscore']['median']:,.0f} | "
        f"{verdict(per_lead['leadscore']['median'] <= TARGETS['state_bytes_per_lead'])} |",
        f"| recovery <= 60 s per million leads | "
        f"{recovered_per_million:,.0f} s | "
        f"{verdict(recovered_per_million <= TARGETS['recovery_s_per_million_leads'])} |",
        "",
        f"![latency vs offered rate]({now:%Y-%m-%d}-{size}-latency.png)",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    results.mkdir(parents=True, exist_ok=True)
    stem = results / f"{now:%Y-%m-%d}-{size}"
    stem.with_suffix(".md").write_text(text, encoding="utf-8")
    document = {"size": size, "date": now.isoformat(timespec="seconds"), "command": command}
    stem.with_suffix(".json").write_text(
        json.dumps({**document, **figures}, indent=2) + "\n", encoding="utf-8"
    )
    plot(steps, results / f"{now:%Y-%m-%d}-{size}-latency.png", size)


def plot(steps: list[dict[str, Any]], path: Path, size: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    styles = {"leadscore": "tab:blue", "limit": "tab:gray", "peer": "tab:orange"}
    for system in SYSTEMS:
        mine = [s for s in steps if s["system"] == system]
        xs = [s["offered"] for s in mine]
        for q, line in (("p50", "--"), ("p99", "-")):
            ax.plot(
                xs,
                [s[q] * 1000 for s in mine],
                line,
                marker="o",
                color=styles[system],
                label=f"{system} {q}",
            )
    ax.set_yscale("log")
    ax.set_xlabel("offered events/s (25%, 50%, 75% of leadscore's drain rate)")
    ax.set_ylabel("event -> action latency, ms")
    ax.set_title(f"Latency vs offered rate ({size})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(ncol=3, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="standard")
    parser.add_argument("--repeat", type=int, help="drain runs per system (default: by size)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument(
        "--systems",
        default=",".join(DRAINED),
        help="systems to drain, comma-separated (leadscore, limit and peer are always needed); "
        f"default: {','.join(DRAINED)}",
    )
    args = parser.parse_args()
    systems = tuple(s for s in DRAINED if s in args.systems.split(","))
    if unknown := set(args.systems.split(",")) - set(DRAINED):
        sys.exit(f"bench: unknown systems {sorted(unknown)}; known: {', '.join(DRAINED)}")
    if not {"leadscore", "limit", "peer"} <= set(systems):
        sys.exit("bench: --systems must include leadscore, limit and peer")
    size = SIZES[args.size]
    repeat = args.repeat or size.repeat
    if not PEER_PYTHON.exists():
        sys.exit(f"bench: {PEER_PYTHON} is missing; run `make peer-venv` first")
    started = time.monotonic()
    bootstrap, started_broker = ensure_broker()
    figures: dict[str, Any] = {"machine": machine(), "versions": versions()}
    try:
        with tempfile.TemporaryDirectory(prefix="leadscore-bench-") as tmp:
            root = Path(tmp)
            say(f"{size.name}: producing {size.events:,} events for {size.contacts:,} contacts")
            workload_deployment = Deployment.fresh(bootstrap, root / "workload")
            contacts = produce(
                bootstrap,
                workload_deployment.events,
                Workload(size.contacts, args.seed, "bench-"),
                size.events,
                30 * DAY_MS,
            )
            figures["workload"] = {
                "events": size.events,
                "contacts": size.contacts,
                "leads": len(contacts),
                "seed": args.seed,
            }
            figures["drain"] = drain_runs(
                bootstrap,
                root,
                workload_deployment.events,
                size.events,
                len(contacts),
                repeat,
                systems,
            )
            max_rate = spread([r["rate"] for r in figures["drain"]["runs"]["leadscore"]])["median"]
            figures["latency"] = latency_runs(
                bootstrap, root, max_rate, size.live_seconds, args.seed
            )
            workload_deployment.delete_topics()
    finally:
        if started_broker:
            stop_broker()
    command = " ".join(["python bench/bench.py", *sys.argv[1:]])
    report(size.name, command, figures, args.results, started)


if __name__ == "__main__":
    main()
