"""Drain throughput of one worker over events produced beforehand (bench/metrics_overhead.py).

The events are produced once to a topic (the seeded workload of bench/workload.py,
so producing is not what is measured); each run is a fresh worker (own app id,
group, state and output topics) that reads that topic from the beginning.
Throughput is measured as in bench/bench.py: the worker's lead-state records
(one per scored event) over the span of their broker append times.
"""

from __future__ import annotations

from pathlib import Path

from systems import Deployment, Drain, drain, start
from workload import DAY_MS, Workload, produce


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
        running.stop()
