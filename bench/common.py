"""What the benchmarks share: a rocksdict store with a table's surface, progress, results.

Run a benchmark as ``python bench/<name>.py``; its folder is then on the import
path, and importing this module puts the repository root there too, for the
harness bench/ shares with the test tiers (tests/support: brokers, deployments,
processes, readiness waits).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from rocksdict import Rdict

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))  # tests.support, ahead of any installed "tests"


class Store:
    """rocksdict with the get / set / del surface the wheel uses (as a Faust table has)."""

    def __init__(self, db: Rdict) -> None:
        self.db = db

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        value = self.db.get(key)
        return default if value is None else value

    def __getitem__(self, key: bytes) -> bytes:
        return cast(bytes, self.db[key])  # raw mode: values are bytes

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.db[key] = value

    def __delitem__(self, key: bytes) -> None:
        del self.db[key]


_drawn: dict[str, int] = {}


def progress(label: str, done: int, total: int) -> None:
    """A progress bar on stderr, redrawn at each 2% of ``total`` (``done`` may jump)."""
    step = 50 * done // max(1, total)
    if step == _drawn.get(label) and done != total:
        return
    _drawn[label] = step
    bar = "#" * (30 * done // max(1, total))
    print(f"\r{label:14} [{bar:<30}] {done}/{total}", end="", file=sys.stderr, flush=True)
    if done >= total:
        print(file=sys.stderr)
        _drawn.pop(label, None)


def spread(xs: list[float]) -> dict[str, float]:
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs)}


def percentile(xs: list[float], q: float) -> float:
    """The q-quantile by nearest rank."""
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def shown(s: dict[str, float], spec: str) -> str:
    """min / median / max of a spread, each formatted with ``spec``."""
    return " / ".join(format(s[k], spec) for k in ("min", "median", "max"))


def record_results(
    slug: str, title: str, command: str, figures: dict[str, Any], table: str
) -> None:
    """Print ``table`` and write bench/results/<date>-<slug>.{json,md} with the machine."""
    now = datetime.now(tz=UTC)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version()}
    result = {
        "benchmark": slug,
        "date": now.isoformat(timespec="seconds"),
        "machine": machine,
        **figures,
    }
    print(table)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"{now:%Y-%m-%d}-{slug}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    stem.with_suffix(".md").write_text(
        f"# {title}, {result['date']}\n\n`{command}` on {machine['cpus']} CPUs, "
        f"Python {machine['python']}\n\n{table}\n",
        encoding="utf-8",
    )
