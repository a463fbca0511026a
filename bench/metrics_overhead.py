"""Cost of the worker's per-event metrics on drain throughput: with and without, same run.

    python bench/metrics_overhead.py --events 100000 --contacts 10000 --repeat 3

One seeded workload is produced once; then fresh workers drain it, alternating
LEADSCORE_METRICS_ENABLED=true and false (counters, latency histograms and the
leads-by-stage census on or off), ``--repeat`` times each. Prints and records
min/median/max events/s of each and the ratio of the medians.
"""

from __future__ import annotations

import sys

from common import record_results, shown, spread
from drain import ab_benchmark


def main() -> None:
    args, rates = ab_benchmark(
        __doc__,
        {
            "on": {"LEADSCORE_METRICS_ENABLED": "true"},
            "off": {"LEADSCORE_METRICS_ENABLED": "false"},
        },
    )
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
