"""What the benchmarks share: a rocksdict store with a table's surface, progress, results.

Run a benchmark as ``python bench/<name>.py``; its folder is then on the import path.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from rocksdict import Rdict

RESULTS = Path(__file__).resolve().parent / "results"
KAFKA_LOCAL = Path(__file__).resolve().parents[1] / "deploy" / "kafka-local" / "kafka-local"


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


def wait_http(url: str, timeout: float, alive: Callable[[], None] | None = None) -> None:
    """Poll ``url`` until it answers 200; ``alive`` may raise when what should answer died."""
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None:
            alive()
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f} s")
        time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_broker() -> tuple[str, bool]:
    """Bootstrap servers, and whether this bench started the broker."""
    given = os.environ.get("LEADSCORE_BOOTSTRAP_SERVERS")
    if given:
        return given, False
    running = subprocess.run([KAFKA_LOCAL, "status"], capture_output=True).returncode == 0
    if not running:
        subprocess.run([KAFKA_LOCAL, "start"], check=True)
    return "127.0.0.1:9092", not running


def deployment_env(bootstrap: str, root: Path) -> dict[str, str]:
    """LEADSCORE_* settings of a fresh deployment: its own topics, app id and directories."""
    name = f"bench{uuid.uuid4().hex[:8]}"
    topics = {
        kind: f"{name}.{kind.lower().replace('_', '-')}"
        for kind in (
            "EVENTS",
            "ACTIONS",
            "LEAD_STATE",
            "SCORE_CHANGES",
            "DLQ",
            "ASSIGNMENTS",
            "SINK_DLQ",
        )
    }
    topics["TICKS"] = f"{name}.ticks"
    return {
        "LEADSCORE_BOOTSTRAP_SERVERS": bootstrap,
        "LEADSCORE_APP_ID": f"leadscore-{name}",
        "LEADSCORE_PARTITIONS": "6",
        "LEADSCORE_WEB_ENABLED": "true",
        "LEADSCORE_LOG_LEVEL": "warn",
        **{f"LEADSCORE_{kind}_TOPIC": topic for kind, topic in topics.items()},
        "LEADSCORE_DATA_DIR": str(root),
        "LEADSCORE_SINK_DATA_DIR": str(root / "sink-data"),
        "LEADSCORE_SINK_METRICS_PORT": "0",
    }


def stop_broker() -> None:
    subprocess.run([KAFKA_LOCAL, "stop"], check=False)
