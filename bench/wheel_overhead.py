"""Per-event cost of keeping the timer wheel up to date, against scoring without it.

Each event in the worker reads the lead, applies the rules, writes the lead
and, when the lead's due slot moves, moves it in the in-memory wheel (a set
removal and insert). This times both paths over the same seeded events on a
real rocksdict lead store, in one run:

    python bench/wheel_overhead.py --events 200000 --contacts 20000 --repeat 3

Prints a table and writes bench/results/<date>-wheel-overhead.{md,json}.
Kafka (sends, changelog records) is not included: the figure is the store
and CPU share the wheel adds to the scoring step.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

from common import progress, record_results, shown, spread
from rocksdict import Rdict

from leadscore.codecs.leads import decode_lead, encode_lead
from leadscore.scoring import EngagementEvent, apply_event, load_rules
from leadscore.simulate import TrafficModel
from leadscore.step.wheel import TimerWheel

SLOT_MS = 10_000


def events(n: int, contacts: int) -> list[EngagementEvent]:
    model = TrafficModel(contacts=contacts, seed=42)
    start = 1_762_000_000_000
    out = []
    for i in range(n):
        body = model.next_event(start + i * 50)
        out.append(EngagementEvent.model_validate(body))
        progress("generate", i + 1, n)
    return out


def run(evs: list[EngagementEvent], with_wheel: bool) -> float:
    rules = load_rules()
    with tempfile.TemporaryDirectory() as tmp:
        leads = Rdict(os.path.join(tmp, "leads"))
        wheel = TimerWheel(0, SLOT_MS, evs[0].occurred_at)
        try:
            started = time.perf_counter()
            for e in evs:
                key = e.contact_id.encode()
                stored = leads.get(key)
                record = decode_lead(stored, key) if stored else None
                applied = apply_event(record, e, rules, e.occurred_at)
                if applied.status != "scored":
                    continue
                if with_wheel:
                    applied.record.due_ms = wheel.reschedule(
                        e.contact_id,
                        record.due_ms if record else None,
                        applied.record.due_ms,
                    )
                leads[key] = encode_lead(applied.record)
            return time.perf_counter() - started
        finally:
            leads.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--contacts", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    evs = events(args.events, args.contacts)
    without: list[float] = []
    with_: list[float] = []
    for i in range(args.repeat):
        without.append(run(evs, with_wheel=False))
        with_.append(run(evs, with_wheel=True))
        print(
            f"run {i + 1}/{args.repeat}: without {without[-1]:.2f} s, with {with_[-1]:.2f} s",
            file=sys.stderr,
        )
    rate = {
        "without_wheel": [args.events / s for s in without],
        "with_wheel": [args.events / s for s in with_],
    }
    ratio = statistics.median(with_) / statistics.median(without)
    figures = {
        "events": args.events,
        "contacts": args.contacts,
        "events_per_s": {k: spread(v) for k, v in rate.items()},
        "time_ratio_with_to_without": ratio,
    }
    table = (
        "| path | events/s min / median / max |\n|---|---|\n"
        + "\n".join(f"| {k} | {shown(spread(v), ',.0f')} |" for k, v in rate.items())
        + f"\n| time with / without | {ratio:.2f} |"
    )
    record_results(
        "wheel-overhead",
        "Wheel overhead per event",
        f"python bench/wheel_overhead.py --events {args.events} --contacts {args.contacts} "
        f"--repeat {args.repeat}",
        figures,
        table,
    )


if __name__ == "__main__":
    main()
