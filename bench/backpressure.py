"""Back-pressure: a cold worker meets a burst already waiting on its topic.

    python bench/backpressure.py --events 1000000 --contacts 100000 --baseline 10000

Two bursts of the seeded workload are produced before any worker starts: a small
one (the baseline) and the big one. For each, a fresh worker (empty state, no
committed offsets) drains the whole burst. Every 2 s the bench scrapes the
worker's own /metrics: ``leadscore_consumer_lag`` (summed over partitions),
``leadscore_events_total`` and ``process_resident_memory_bytes``. It prints peak
RSS of both and their ratio (memory must not grow with the burst: Faust holds a
bounded buffer per partition and pauses fetching when it is full), the drain
time and rate, and the lag at the end; bench/results/<date>-backpressure.png
plots lag and RSS over time, as a dashboard would show them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import RESULTS, progress, record_results
from drain import produce_workload
from prometheus_client.parser import text_string_to_metric_families
from systems import Deployment, start, wait_http_ready

from tests.support.brokers import ensure_broker, stop_broker


@dataclass
class Sample:
    seconds: float
    lag: int
    handled: int
    rss: int


@dataclass
class Burst:
    name: str
    events: int
    samples: list[Sample] = field(default_factory=list)
    peak_rss: int = 0
    seconds: float = 0.0  # from ready to every event handled and committed

    def summary(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "seconds": self.seconds,
            "rate": self.events / self.seconds,
            "peak_rss": self.peak_rss,
            "max_lag": max(s.lag for s in self.samples),
            "final_lag": self.samples[-1].lag,
            "samples": [vars(s) for s in self.samples],
        }


def scrape(port: int, events_topic: str) -> tuple[int, int, int]:
    """(lag on the events topic, input records handled, resident bytes) from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    lag = handled = rss = 0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "leadscore_consumer_lag":
                if sample.labels.get("topic") == events_topic:
                    lag += int(sample.value)
            elif sample.name == "leadscore_events_total":
                handled += int(sample.value)
            elif sample.name == "process_resident_memory_bytes":
                rss = int(sample.value)
    return lag, handled, rss


def drain_burst(
    bootstrap: str, root: Path, topic: str, burst: Burst, interval: float, timeout: float
) -> None:
    """A fresh worker drains ``topic``; samples its metrics until lag is 0 after the burst."""
    deployment = Deployment.fresh(bootstrap, root, topic)
    running = start("leadscore", deployment, web=True)
    try:
        wait_http_ready(running, 180)
        assert running.web_port is not None
        began = time.monotonic()
        while True:
            if running.popen.poll() is not None:
                raise RuntimeError(f"the worker exited with {running.popen.returncode}")
            lag, handled, rss = scrape(running.web_port, topic)
            burst.samples.append(Sample(time.monotonic() - began, lag, handled, rss))
            progress(burst.name, min(handled, burst.events), burst.events)
            if handled >= burst.events and lag == 0:
                burst.seconds = time.monotonic() - began
                return
            if time.monotonic() - began > timeout:
                raise TimeoutError(
                    f"{handled:,} of {burst.events:,} events handled, lag {lag:,}, after "
                    f"{timeout:.0f} s; the worker's log: {running.log_tail()}"
                )
            time.sleep(interval)
    finally:
        burst.peak_rss = running.finish()
        deployment.delete_topics()


def plot(bursts: list[Burst], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lag_ax, rss_ax) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for burst, colour in zip(bursts, ("tab:gray", "tab:blue"), strict=True):
        t = [s.seconds for s in burst.samples]
        label = f"{burst.name}: {burst.events:,} events"
        lag_ax.plot(t, [s.lag for s in burst.samples], color=colour, label=label)
        rss_ax.plot(t, [s.rss / 2**20 for s in burst.samples], color=colour, label=label)
    lag_ax.set_ylabel("consumer lag, records")
    lag_ax.legend()
    rss_ax.set_ylabel("resident memory, MiB")
    rss_ax.set_xlabel("seconds since the cold worker was ready")
    rss_ax.set_ylim(bottom=0)
    lag_ax.set_title("A cold worker drains a burst: leadscore_consumer_lag and RSS from /metrics")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--baseline", type=int, default=10_000, help="events in the small burst")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between scrapes")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    bootstrap, started = ensure_broker()
    bursts = [Burst("baseline", args.baseline), Burst("burst", args.events)]
    try:
        with tempfile.TemporaryDirectory(prefix="leadscore-bench-") as tmp:
            root = Path(tmp)
            topics = []
            for burst in bursts:
                print(
                    f"bench: producing the {burst.name} ({burst.events:,} events)", file=sys.stderr
                )
                contacts = min(args.contacts, max(1, burst.events // 10))
                topics.append(
                    produce_workload(
                        bootstrap, root / burst.name, burst.events, contacts, args.seed
                    )
                )
            for burst, topic in zip(bursts, topics, strict=True):
                timeout = max(600.0, burst.events / 100)
                drain_burst(
                    bootstrap, root / f"{burst.name}-run", topic, burst, args.interval, timeout
                )
    finally:
        if started:
            stop_broker()
    small, big = (b.summary() for b in bursts)
    ratio = big["peak_rss"] / small["peak_rss"]
    rows = [
        f"| {b.name} | {s['events']:,} | {s['seconds']:,.0f} | {s['rate']:,.0f} | "
        f"{s['max_lag']:,} | {s['final_lag']:,} | {s['peak_rss'] / 2**20:,.0f} |"
        for b, s in zip(bursts, (small, big), strict=True)
    ]
    stem = f"{time.strftime('%Y-%m-%d', time.gmtime())}-backpressure"
    table = "\n".join(
        [
            "| burst | events | s to lag 0 | events/s | max lag | final lag | peak RSS MiB |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"peak RSS, burst / baseline: **{ratio:.2f}** ({args.events:,} vs {args.baseline:,} "
            "events waiting before a cold worker starts; one worker, 6 partitions)",
            "",
            f"![lag and RSS over time]({stem}.png)",
        ]
    )
    plot(bursts, RESULTS / f"{stem}.png")
    record_results(
        "backpressure",
        "A cold worker drains a burst",
        " ".join(["python bench/backpressure.py", *sys.argv[1:]]),
        {"baseline": small, "burst": big, "rss_ratio": ratio},
        table,
    )


if __name__ == "__main__":
    main()
