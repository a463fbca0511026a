"""Drain throughput of one worker over events produced beforehand (A/B benches).

The events are produced once to a topic (the seeded workload of bench/workload.py,
so producing is not what is measured); each run is a fresh worker (own app id,
group, state and output topics) that reads that topic from the beginning.
Throughput is measured as in bench/bench.py: the worker's lead-state records
(one per scored event) over the span of their broker append times.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from systems import Deployment, Drain, drain, start
from workload import DAY_MS, Workload, produce

from tests.support.brokers import ensure_broker, stop_broker


def produce_workload(bootstrap: str, root: Path, events: int, contacts: int, seed: int) -> str:
    """A fresh events topic holding ``events`` seeded events; its name."""
    topic = Deployment.fresh(bootstrap, root / "workload").events
    produce(bootstrap, topic, Workload(contacts, seed, "drain-"), events, 7 * DAY_MS)
    return topic


def drain_once(
    bootstrap: str, root: Path, events_topic: str, expected: int, **settings: str
) -> Drain:
    """One fresh worker over ``events_topic``; ``settings`` are extra LEADSCORE_* values."""
    deployment = Deployment.fresh(bootstrap, root, events_topic)
    deployment.env.update(settings)
    running = start("leadscore", deployment)
    try:
        return drain(bootstrap, deployment.counted, expected, 900, running)
    finally:
        running.finish()


def alternate(
    bootstrap: str,
    root: Path,
    events_topic: str,
    expected: int,
    repeat: int,
    variants: dict[str, dict[str, str]],
) -> dict[str, list[float]]:
    """Fresh workers drain ``events_topic`` once per variant per round; events/s per variant.

    ``variants`` maps a name to its extra LEADSCORE_* settings. The order of the
    variants is reversed every other round, so drift on a shared machine falls on
    both sides.
    """
    rates: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for i in range(repeat):
        for name in names if i % 2 == 0 else names[::-1]:
            print(f"bench: round {i + 1}/{repeat}, {name}", file=sys.stderr)
            settings = variants[name]
            run = drain_once(bootstrap, root / f"{name}-{i}", events_topic, expected, **settings)
            rates[name].append(run.rate)
    return rates


def ab_benchmark(
    doc: str, variants: dict[str, dict[str, str]]
) -> tuple[argparse.Namespace, dict[str, list[float]]]:
    """The command line and runs of an A/B drain benchmark: its arguments, events/s per variant.

    Options: --events, --contacts, --repeat, --seed. Starts the bench broker if
    none is running (and stops it after), produces one workload and alternates
    the variants over it (see ``alternate``).
    """
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    bootstrap, started_broker = ensure_broker()
    try:
        with tempfile.TemporaryDirectory(prefix="leadscore-bench-") as tmp:
            root = Path(tmp)
            topic = produce_workload(bootstrap, root, args.events, args.contacts, args.seed)
            rates = alternate(bootstrap, root, topic, args.events, args.repeat, variants)
    finally:
        if started_broker:
            stop_broker()
    return args, rates
