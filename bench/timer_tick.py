"""Cost of one timer tick: N leads in RocksDB, a share of them due, against a full scan.

The worker keeps lead records and the timer wheel in RocksDB tables (one store
per partition). This benchmark builds the same layout in one rocksdict store:
N lead records scored by the real engine and scheduled in a TimerWheel; then it
times a tick at the moment ``--due`` of them have come due (wheel walk, lead
reads, apply_tick, writes) and, as the baseline in the same run, a scan that
reads and decodes every lead record (what a timer without a due-time index
would do).

    python bench/timer_tick.py --leads 100000 --due 0.01 --repeat 5

Prints a table and writes bench/results/<date>-timer-tick.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
from rocksdict import Rdict

from leadscore.scoring import EngagementEvent, LeadRecord, apply_event, apply_tick, load_rules
from leadscore.stream.wheel import TimerWheel

SLOT_MS = 10_000
T0 = 1_762_000_000_000
RESULTS = Path(__file__).resolve().parent / "results"


class Store:
    """rocksdict with the get / set / del surface the wheel uses (as a Faust table has)."""

    def __init__(self, db: Rdict) -> None:
        self.db = db

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        value = self.db.get(key)
        return default if value is None else value

    def __getitem__(self, key: bytes) -> bytes:
        return self.db[key]

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.db[key] = value

    def __delitem__(self, key: bytes) -> None:
        del self.db[key]


def progress(label: str, done: int, total: int) -> None:
    if done % max(1, total // 50) == 0 or done == total:
        bar = "#" * (30 * done // total)
        print(f"\r{label:14} [{bar:<30}] {done}/{total}", end="", file=sys.stderr, flush=True)
        if done == total:
            print(file=sys.stderr)


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
    wheel = TimerWheel(store, partition=0, slot_ms=SLOT_MS)  # type: ignore[arg-type]
    dues = []
    for i, record in enumerate(records):
        record.due_ms = wheel.reschedule(record.contact_id, None, record.due_ms, first_due)
        assert record.due_ms is not None
        dues.append(record.due_ms)
        db[f"lead:{record.contact_id}".encode()] = orjson.dumps(record.to_dict())
        progress("store", i + 1, leads)
    return store, wheel, sorted(dues)


def tick(store: Store, wheel: TimerWheel, now: int) -> tuple[int, int]:
    """What the agent does on a tick; returns (due leads visited, actions)."""
    rules = load_rules()
    visited = actions = 0
    for due in wheel.take_due(now):
        for contact in due.contacts:
            key = f"lead:{contact}".encode()
            record = LeadRecord.from_dict(orjson.loads(store[key]))
            applied = apply_tick(record, rules, now)
            applied.record.due_ms = wheel.reschedule(contact, None, applied.record.due_ms, now)
            store[key] = orjson.dumps(applied.record.to_dict())
            visited += 1
            actions += len(applied.actions)
    return visited, actions


def scan(db: Rdict) -> int:
    """Baseline: read and decode every lead record, as a timer without an index must."""
    seen = 0
    for key, value in db.items(from_key=b"lead:"):
        if not key.startswith(b"lead:"):
            break
        LeadRecord.from_dict(orjson.loads(value))
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

    def stats(xs: list[float]) -> dict[str, float]:
        return {"min": min(xs), "median": statistics.median(xs), "max": max(xs)}

    result = {
        "benchmark": "timer-tick",
        "date": datetime.now(tz=UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "leads": args.leads,
        "due_share": args.due,
        "due_visited": visited,
        "slots_walked": walked,
        "actions": actions,
        "scanned": scanned,
        "tick_ms": stats(tick_ms),
        "scan_ms": stats(scan_ms),
        "tick_us_per_due_lead": statistics.median(tick_ms) * 1000 / max(visited, 1),
        "ratio_tick_to_scan": statistics.median(tick_ms) / statistics.median(scan_ms),
    }
    rows = [
        ("leads in the table", f"{args.leads:,}"),
        ("due at the tick", f"{visited:,} ({actions:,} stage changes)"),
        ("wheel slots walked (10 s each)", f"{walked:,}"),
        ("tick (index walk + due leads), ms", _fmt(result["tick_ms"])),
        ("baseline: scan all leads, ms", _fmt(result["scan_ms"])),
        ("tick per due lead, us", f"{result['tick_us_per_due_lead']:.1f}"),
        ("tick / scan", f"{result['ratio_tick_to_scan']:.3f}"),
    ]
    table = "| measure | min / median / max |\n|---|---|\n" + "\n".join(
        f"| {k} | {v} |" for k, v in rows
    )
    print(table)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"{datetime.now(tz=UTC):%Y-%m-%d}-timer-tick"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    stem.with_suffix(".md").write_text(
        f"# Timer tick, {result['date']}\n\n`python bench/timer_tick.py --leads {args.leads} "
        f"--due {args.due} --repeat {args.repeat}` on {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}\n\n{table}\n",
        encoding="utf-8",
    )


def _fmt(s: dict[str, float]) -> str:
    return f"{s['min']:.1f} / {s['median']:.1f} / {s['max']:.1f}"


if __name__ == "__main__":
    main()
