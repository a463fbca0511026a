"""Where a worker's time goes per event: one drain under py-spy, samples by cost.

    python bench/profile_worker.py --events 60000 --contacts 10000
    python bench/profile_worker.py --rate 1700 --seconds 30

With ``--rate`` the worker is profiled under live traffic instead (the latency
runs of bench.py: events sent at that rate for ``--seconds``), and the event ->
action latency is printed beside the profile (slug ``profile-live``).

A seeded workload is produced, one fresh worker drains it under ``py-spy record``
(raw stacks, 200 Hz), and each sample is put in the first cost whose frames are
on its stack (in the order of COSTS: a table write's changelog send counts as the
table write, not as output). Prints and records the table: share of samples and
microseconds per event (samples / 200 Hz / events; py-spy samples a thread only
while it is not idle, apart from the event loop's epoll wait, shown as its own row).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from common import record_results
from systems import Deployment, drain, offer, start, wait_ready
from workload import DAY_MS, Workload, produce

from tests.support.brokers import ensure_broker, stop_broker

RATE = 200
# (cost, frame substrings): the first cost with a frame on the stack takes the sample.
COSTS: list[tuple[str, tuple[str, ...]]] = [
    ("start-up (imports, topic checks, recovery)", ("_find_and_load", "require_topics")),
    ("scoring core (apply_event, snapshot)", ("leadscore/scoring/",)),
    (
        "table writes (RocksDB put, changelog record, offset bookkeeping)",
        (
            "ManagedUserDict.__setitem__",
            "Collection.send_changelog",
            "set_persisted_offset",
            "apply_delivered",
        ),
    ),
    ("table reads (RocksDB get)", ("ManagedUserDict.__getitem__", "Store._get", "_contains")),
    ("codecs (event decode, output and lead JSON)", ("leadscore/codecs/",)),
    ("metrics, census and timer wheel", ("leadscore/metrics", "prometheus_client", "wheel.py")),
    (
        "output records (librdkafka or Faust topic send, aiokafka producer and sender)",
        (
            "stream/sender.py",
            "Topic.send",
            "publish_message",
            "aiokafka/producer",
            "ProducerBuffer",
            "faust_ext/producer",
        ),
    ),
    (
        "consuming (aiokafka fetch, Faust stream and commit)",
        (
            "aiokafka/consumer",
            "faust/transport/consumer",
            "faust/streams",
            "Conductor",
            "faust_ext/consumer",
            "faust_ext/streams",
        ),
    ),
    (
        "the step's own work and the agent (step/, stream/app.py)",
        ("leadscore/step/", "leadscore/stream/"),
    ),
    ("event loop waiting (epoll)", ("EpollSelector.select",)),
]
OTHER = "other (asyncio, aiokafka connection I/O, Faust/mode services)"


def bucket(stacks: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in stacks.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        for cost, needles in COSTS:
            if any(needle in stack for needle in needles):
                counts[cost] += int(n)
                break
        else:
            counts[OTHER] += int(n)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--stacks", type=Path, help="also keep py-spy's raw stacks here")
    parser.add_argument("--rate", type=float, help="live traffic at this rate instead of a drain")
    parser.add_argument("--seconds", type=float, default=30.0, help="live traffic's duration")
    args = parser.parse_args()
    live = args.rate is not None
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    bootstrap, started_broker = ensure_broker()
    try:
        with tempfile.TemporaryDirectory(prefix="leadscore-profile-") as tmp:
            root = Path(tmp)
            workload = None if live else Deployment.fresh(bootstrap, root / "workload")
            if workload is not None:
                produce(
                    bootstrap,
                    workload.events,
                    Workload(args.contacts, args.seed, "prof-"),
                    args.events,
                    7 * DAY_MS,
                )
            deployment = Deployment.fresh(
                bootstrap, root / "worker", workload.events if workload else None
            )
            running = start("leadscore", deployment)
            if live:
                wait_ready(running, deployment)
            stacks = root / "stacks.txt"
            recorder = subprocess.Popen(
                [
                    spy,
                    "record",
                    "-r",
                    str(RATE),
                    "-f",
                    "raw",
                    "-o",
                    str(stacks),
                    "--pid",
                    str(running.popen.pid),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if live:
                latency = offer("leadscore", deployment, args.rate, args.seconds, args.seed)
                events, rate = int(args.rate * args.seconds), latency.offered
                summary = latency.summary()
            else:
                result = drain(bootstrap, deployment.counted, args.events, 900, running)
                events, rate, summary = args.events, result.rate, {}
            recorder.send_signal(2)  # py-spy writes its output on SIGINT
            recorder.wait(60)
            running.finish()
            counts = bucket(stacks)
            if args.stacks:
                shutil.copyfile(stacks, args.stacks)
            for d in (deployment, workload):
                if d is not None:
                    d.delete_topics()
    finally:
        if started_broker:
            stop_broker()
    total = sum(counts.values())
    rows = [
        "| cost | share of samples | µs per event |",
        "|---|---|---|",
        *(
            f"| {cost} | {n / total:.1%} | {n / RATE / events * 1e6:,.0f} |"
            for cost, n in counts.most_common()
        ),
        "",
        (
            f"{events:,} events offered live at {rate:,.0f} events/s for {args.seconds:,.0f} s "
            f"to one worker under py-spy ({total:,} samples at {RATE} Hz); event -> action "
            f"latency over {summary['n']:,} actions: p50 {summary['p50'] * 1000:,.1f} ms, "
            f"p99 {summary['p99'] * 1000:,.1f} ms, max {summary['max'] * 1000:,.1f} ms"
            if live
            else f"{events:,} events, {args.contacts:,} contacts, one worker at "
            f"{rate:,.0f} events/s under py-spy ({total:,} samples at {RATE} Hz)"
        ),
    ]
    record_results(
        "profile-live" if live else "profile",
        "Where a worker's time goes per event (py-spy)",
        " ".join(["python bench/profile_worker.py", *sys.argv[1:]]),
        {"events": events, "rate": rate, "latency": summary, "samples": dict(counts)},
        "\n".join(rows),
    )


if __name__ == "__main__":
    main()
