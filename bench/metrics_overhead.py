"""Cost of the worker's per-event metrics on drain throughput: with and without, same run.

    python bench/metrics_overhead.py --events 100000 --contacts 10000 --repeat 3

One seeded workload is produced once; then fresh workers drain it, alternating
LEADSCORE_METRICS_ENABLED=true and false (counters, latency histograms and the
leads-by-stage census on or off), ``--repeat`` times each. Prints and records
min/median/max events/s of each and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from common import ensure_broker, record_results, shown, spread, stop_broker
from drain import alternate, produce_workload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()

    bootstrap, started_broker = ensure_broker()
    try:
        with tempfile.TemporaryDirectory(prefix="leadscore-bench-") as tmp:
            topic = produce_workload(bootstrap, Path(tmp), args.events, args.contacts, args.seed)
            rates = alternate(
                bootstrap,
                Path(tmp),
                topic,
                args.events,
                args.repeat,
                {
                    "on": {"LEADSCORE_METRICS_ENABLED": "true"},
                    "off": {"LEADSCORE_METRICS_ENABLED": "false"},
                },
            )
    finally:
        if started_broker:
            stop_broker()
    on, off = spread(rates["on"]), spread(rates["off"])
    ratio = on["median"] / off["median"]
    table = "\n".join(
        [
            "| worker | events/s (min / median / max) |",
            "|---|---|",
            f"| metrics on (default) | {shown(on, ',.0f')} |",
            f"| metrics off | {shown(off, ',.0f')} |",
            "",
            f"on/off median throughput: **{ratio:.3f}** "
            f"({(1 - ratio) * 100:+.1f}% cost of metrics; {args.events:,} events, "
            f"{args.contacts:,} contacts, 6 partitions, one worker, runs alternated)",
        ]
    )
    record_results(
        "metrics-overhead",
        "Metrics overhead on drain throughput",
        " ".join(["python bench/metrics_overhead.py", *sys.argv[1:]]),
        {"events": args.events, "contacts": args.contacts, "rates": rates, "ratio": ratio},
        table,
    )


if __name__ == "__main__":
    main()
