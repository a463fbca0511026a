"""Cost of one timer tick: N leads in RocksDB, a share of them due, against a full scan.

The worker keeps lead records in a RocksDB table (one store per partition) and
the timer wheel in memory. This benchmark builds the same layout: N lead records
scored by the real engine in one rocksdict store, scheduled in a TimerWheel; then it
times a tick at the moment ``--due`` of them have come due (wheel walk, lead
reads, apply_tick, writes) and, as the baseline in the same run, a scan that
reads and decodes every lead record (what a timer without a due-time index
would do).

    python bench/timer_tick.py --leads 100000 --due 0.01 --repeat 5

Prints a table and writes bench/results/<date>-timer-tick.{md,json}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

from common import Store, progress, record_results, shown, spread
from rocksdict import Rdict

from leadscore.codecs.leads import decode_lead, encode_lead
from leadscore.scoring import EngagementEvent, apply_event, apply_tick, load_rules
from leadscore.step.wheel import TimerWheel

SLOT_MS = 10_000
T0 = 1_762_000_000_000
RESULTS = Path(__file__).resolve().parent / "results"


def build(db: Rdict, leads: int) -> tuple[Store, TimerWheel, list[int]]:
    """Score ``leads`` leads (one demo request each, spread over a day) and schedule them.

    The wheel starts at the earliest due time, as a running worker's wheel would be
    when those leads come due: a tick walks only the slots since the previous tick.
    """
    rules = load_rules()
    records = []
    for i in range(leads):
        at = T0 + (i * 86_400_000) // leads
        event = EngagementEvent(
            event_id=f"e{i}", contact_id=f"c{i}", type="demo_request", occurred_at=at
        )
        records.append(apply_event(None, event, rules, at).record)
        progress("score", i + 1, leads)
    first_due = min(r.due_ms for r in records if r.due_ms is not None)
    store = Store(db)
    wheel = TimerWheel(partition=0, slot_ms=SLOT_MS, now_ms=first_due)
    dues = []
    for i, record in enumerate(records):
        record.due_ms = wheel.reschedule(record.contact_id, None, record.due_ms)
        assert record.due_ms is not None
        dues.append(record.due_ms)
        db[f"lead:{record.contact_id}".encode()] = encode_lead(record)
        progress("store", i + 1, leads)
    return store, wheel, sorted(dues)


def tick(store: Store, wheel: TimerWheel, now: int) -> tuple[int, int]:
    """What the agent does on a tick; returns (due leads visited, actions)."""
    rules = load_rules()
    visited = actions = 0
    for due in wheel.take_due(now):
        for contact in due.contacts:
            key = f"lead:{contact}".encode()
            record = decode_lead(store[key], contact.encode())
            applied = apply_tick(record, rules, now)
            applied.record.due_ms = wheel.reschedule(contact, None, applied.record.due_ms)
            store[key] = encode_lead(applied.record)
            visited += 1
            actions += len(applied.actions)
    return visited, actions


def scan(db: Rdict) -> int:
    """Baseline: read and decode every lead record, as a timer without an index must."""
    seen = 0
    for key, value in cast(Iterator[tuple[bytes, bytes]], db.items(from_key=b"lead:")):  # raw mode
        if not key.startswith(b"lead:"):
            break
        decode_lead(value, key[len(b"lead:") :])
        seen += 1
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--due", type=float, default=0.01, help="share of leads due at the tick")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    tick_ms: list[float] = []
    walked = 0
    scan_ms: list[float] = []
    visited = actions = scanned = 0
    for run in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            db = Rdict(os.path.join(tmp, "db"))
            try:
                store, wheel, dues = build(db, args.leads)
                # The tick time at which the first `due` share of the leads have come due.
                now = (dues[int(len(dues) * args.due) - 1] // SLOT_MS + 1) * SLOT_MS
                walked = now // SLOT_MS - dues[0] // SLOT_MS
                started = time.perf_counter()
                visited, actions = tick(store, wheel, now)
                tick_ms.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                scanned = scan(db)
                scan_ms.append((time.perf_counter() - started) * 1000)
            finally:
                db.close()
        print(
            f"run {run + 1}/{args.repeat}: tick {tick_ms[-1]:.1f} ms, scan {scan_ms[-1]:.1f} ms",
            file=sys.stderr,
        )

    figures = {
        "leads": args.leads,
        "due_share": args.due,
        "due_visited": visited,
        "slots_walked": walked,
        "actions": actions,
        "scanned": scanned,
        "tick_ms": spread(tick_ms),
        "scan_ms": spread(scan_ms),
        "tick_us_per_due_lead": statistics.median(tick_ms) * 1000 / max(visited, 1),
        "ratio_tick_to_scan": statistics.median(tick_ms) / statistics.median(scan_ms),
    }
    rows = [
        ("leads in the table", f"{args.leads:,}"),
        ("due at the tick", f"{visited:,} ({actions:,} stage changes)"),
        ("wheel slots walked (10 s each)", f"{walked:,}"),
        ("tick (index walk + due leads), ms", shown(figures["tick_ms"], ".1f")),
        ("baseline: scan all leads, ms", shown(figures["scan_ms"], ".1f")),
        ("tick per due lead, us", f"{figures['tick_us_per_due_lead']:.1f}"),
        ("tick / scan", f"{figures['ratio_tick_to_scan']:.3f}"),
    ]
    table = "| measure | min / median / max |\n|---|---|\n" + "\n".join(
        f"| {k} | {v} |" for k, v in rows
    )
    record_results(
        "timer-tick",
        "Timer tick",
        f"python bench/timer_tick.py --leads {args.leads} --due {args.due} --repeat {args.repeat}",
        figures,
        table,
    )


if __name__ == "__main__":
    main()
