"""Throughput cost of each processing guarantee: at_least_once vs exactly_once, same run.

    python bench/guarantee_cost.py --events 100000 --contacts 10000 --repeat 3

One seeded workload is produced once; then fresh workers drain it with
LEADSCORE_PROCESSING_GUARANTEE=at_least_once and =exactly_once, alternated,
``--repeat`` times each. Prints and records min/median/max events/s of each and
the ratio of the medians (exactly_once / at_least_once).
"""

from __future__ import annotations

import sys

from common import record_results, shown, spread
from drain import ab_benchmark

GUARANTEES = ("at_least_once", "exactly_once")


def main() -> None:
    args, rates = ab_benchmark(
        __doc__,
        {g: {"LEADSCORE_PROCESSING_GUARANTEE": g} for g in GUARANTEES},
    )
    alos, eos = spread(rates["at_least_once"]), spread(rates["exactly_once"])
    ratio = eos["median"] / alos["median"]
    table = "\n".join(
        [
            "| processing guarantee | events/s (min / median / max) |",
            "|---|---|",
            f"| at_least_once (default) | {shown(alos, ',.0f')} |",
            f"| exactly_once | {shown(eos, ',.0f')} |",
            "",
            f"exactly_once / at_least_once median throughput: **{ratio:.3f}** "
            f"({args.events:,} events, {args.contacts:,} contacts, 6 partitions, "
            "one worker, runs alternated)",
        ]
    )
    record_results(
        "guarantee-cost",
        "Throughput per processing guarantee",
        " ".join(["python bench/guarantee_cost.py", *sys.argv[1:]]),
        {"events": args.events, "contacts": args.contacts, "rates": rates, "ratio": ratio},
        table,
    )


if __name__ == "__main__":
    main()
