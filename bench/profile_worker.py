"""Where a worker's time goes per event: one drain under py-spy, samples by cost.

    python bench/profile_worker.py --events 60000 --contacts 10000

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

from common import ensure_broker, record_results, stop_broker
from systems import Deployment, drain, start
from workload import DAY_MS, Workload, produce

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
    ("the step's own work and the agent (stream/step.py, stream/app.py)", ("leadscore/stream/",)),
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
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    bootstrap, started_broker = ensure_broker()
    try:
        with tempfile.TemporaryDirectory(prefix="leadscore-profile-") as tmp:
            root = Path(tmp)
            workload = Deployment.fresh(bootstrap, root / "workload")
            produce(
                bootstrap,
                workload.events,
                Workload(args.contacts, args.seed, "prof-"),
                args.events,
                7 * DAY_MS,
            )
            deployment = Deployment.fresh(bootstrap, root / "worker", workload.events)
            running = start("leadscore", deployment)
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
                    str(running.process.pid),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            result = drain(bootstrap, deployment.counted, args.events, 900, running)
            recorder.send_signal(2)  # py-spy writes its output on SIGINT
            recorder.wait(60)
            running.stop()
            counts = bucket(stacks)
            if args.stacks:
                shutil.copyfile(stacks, args.stacks)
            for d in (deployment, workload):
                d.delete_topics()
    finally:
        if started_broker:
            stop_broker()
    total = sum(counts.values())
    rows = [
        "| cost | share of samples | µs per event |",
        "|---|---|---|",
        *(
            f"| {cost} | {n / total:.1%} | {n / RATE / args.events * 1e6:,.0f} |"
            for cost, n in counts.most_common()
        ),
        "",
        f"{args.events:,} events, {args.contacts:,} contacts, one worker at "
        f"{result.rate:,.0f} events/s under py-spy ({total:,} samples at {RATE} Hz)",
    ]
    record_results(
        "profile",
        "Where a worker's time goes per event (py-spy)",
        " ".join(["python bench/profile_worker.py", *sys.argv[1:]]),
        {"events": args.events, "rate": result.rate, "samples": dict(counts)},
        "\n".join(rows),
    )


if __name__ == "__main__":
    main()
