"""Notification sink: deliveries per second, and action->delivery latency at a fixed rate.

A real broker (LEADSCORE_BOOTSTRAP_SERVERS, else the local KRaft broker), one
`leadscore sink notify` process and a local HTTP receiver (aiohttp, answers
200 at once) that records when each Idempotency-Key arrived.

1. baseline: a plain aiohttp client posting the same bodies to the same
   receiver with the sink's concurrency (no Kafka, no retries, no ledger);
2. drain: ``--actions`` actions pre-produced, the sink started, deliveries/s
   from the first to the last arrival;
3. latency: actions produced live at ``--load`` x the drain rate for
   ``--seconds``; arrival minus the action's emitted_at, p50/p95/p99/max.

    python bench/notify_throughput.py --actions 5000 --load 0.5 --seconds 20 --repeat 3

Prints a table and writes bench/results/<date>-notify-sink.{md,json}.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml
from aiohttp import web
from common import percentile, progress, record_results, shown, spread
from confluent_kafka import Producer

from tests.support.brokers import ensure_broker, stop_broker
from tests.support.deployments import Deployment, prefixed_name
from tests.support.http import free_port

CONCURRENCY = 8


class Receiver:
    """Answers 200 to every POST and keeps the arrival time of each Idempotency-Key."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.arrivals: dict[str, float] = {}

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.arrivals.setdefault(request.headers.get("Idempotency-Key", ""), time.time())
        return web.Response(text="ok")

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()

            async def serve() -> None:
                app = web.Application()
                app.router.add_post("/{tail:.*}", self.handle)
                runner = web.AppRunner(app, access_log=None)
                await runner.setup()
                await web.TCPSite(runner, "127.0.0.1", self.port).start()
                ready.set()

            loop.run_until_complete(serve())
            loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        ready.wait(10)


def action(i: int, emitted_at: int) -> dict[str, Any]:
    return {
        "action_id": f"b-{i:07d}",
        "contact_id": f"contact-{i % 1000}",
        "account_id": None,
        "kind": "threshold_crossed",
        "name": "mql",
        "score": 64.0,
        "previous_score": 58.0,
        "stage": "qualified",
        "previous_stage": "hot",
        "occurred_at": emitted_at,
        "emitted_at": emitted_at,
        "cause_event_id": f"ev-{i}",
        "reasons": [{"rule_id": "demo-request", "points": 30.0, "clipped": 0.0, "cap_id": None}],
        "rules_version": "bench",
        "fit": 0.0,
        "grade": None,
        "fit_reasons": [],
        "traits": {},
    }


async def baseline(url: str, count: int) -> float:
    """Deliveries/s of a bare client loop with the sink's concurrency."""
    bodies = [orjson.dumps(action(i, 0)) for i in range(count)]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)
    async with aiohttp.ClientSession() as session:

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                headers = {"Idempotency-Key": f"base-{i}", "Content-Type": "application/json"}
                async with session.post(url, data=bodies[i], headers=headers) as answer:
                    await answer.read()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return count / (time.perf_counter() - started)


def wait_arrivals(receiver: Receiver, prefix: str, count: int, label: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        got = sum(1 for k in list(receiver.arrivals) if k.startswith(prefix))
        progress(label, min(got, count), count)
        if got >= count:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"{label}: {got} of {count} delivered within {timeout} s")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--actions", type=int, default=5000)
    parser.add_argument("--load", type=float, default=0.5, help="share of the drain rate")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    bootstrap, started_broker = ensure_broker()
    receiver = Receiver(free_port())
    receiver.start()
    url = f"http://127.0.0.1:{receiver.port}/hook"
    rates: dict[str, list[float]] = {"baseline": [], "sink": []}
    latencies: dict[str, list[float]] = {"p50": [], "p95": [], "p99": [], "max": []}
    try:
        for run in range(args.repeat):
            rates["baseline"].append(asyncio.run(baseline(url, args.actions)))
            with tempfile.TemporaryDirectory(prefix="leadscore-bench-") as tmp:
                deployment = Deployment(
                    bootstrap, Path(tmp), prefixed_name("bench"), 6, {"LEADSCORE_LOG_LEVEL": "warn"}
                )
                settings = deployment.settings()
                deployment.create_topics()
                config = Path(tmp) / "notify.yaml"
                endpoint = {
                    "name": "bench",
                    "kind": "webhook",
                    "url": url,
                    "secret_env": "LEADSCORE_BENCH_SECRET",
                    "rate_per_second": 10_000,
                    "max_concurrency": CONCURRENCY,
                }
                config.write_text(yaml.safe_dump({"endpoints": [endpoint]}))
                producer = Producer(
                    {"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True}
                )
                prefix = f"r{run}-"
                for i in range(args.actions):
                    a = action(i, int(time.time() * 1000))
                    a["action_id"] = f"{prefix}{i:07d}"
                    producer.produce(
                        settings.actions_topic, key=a["contact_id"], value=orjson.dumps(a)
                    )
                    producer.poll(0)
                producer.flush(30)
                sink = deployment.notify_sink(config, LEADSCORE_BENCH_SECRET="bench").launch()
                try:
                    wait_arrivals(receiver, prefix, args.actions, f"drain {run + 1}", 300)
                    times = sorted(t for k, t in receiver.arrivals.items() if k.startswith(prefix))
                    rate = (len(times) - 1) / (times[-1] - times[0])
                    rates["sink"].append(rate)

                    offered = max(1.0, rate * args.load)
                    live = f"l{run}-"
                    total = int(offered * args.seconds)
                    started = time.monotonic()
                    emitted: dict[str, int] = {}
                    for i in range(total):
                        due = started + i / offered
                        pause = due - time.monotonic()
                        if pause > 0:
                            time.sleep(pause)
                        a = action(i, int(time.time() * 1000))
                        a["action_id"] = f"{live}{i:07d}"
                        emitted[a["action_id"]] = a["emitted_at"]
                        producer.produce(
                            settings.actions_topic, key=a["contact_id"], value=orjson.dumps(a)
                        )
                        producer.poll(0)
                    producer.flush(30)
                    wait_arrivals(receiver, live, total, f"live {run + 1}", 120)
                    ms = [receiver.arrivals[k] * 1000 - emitted[k] for k in emitted]
                    latencies["p50"].append(statistics.median(ms))
                    latencies["p95"].append(percentile(ms, 0.95))
                    latencies["p99"].append(percentile(ms, 0.99))
                    latencies["max"].append(max(ms))
                finally:
                    sink.stop()
                    del producer  # closed before the broker stops
    finally:
        if started_broker:
            stop_broker()

    ratio = statistics.median(rates["sink"]) / statistics.median(rates["baseline"])
    figures = {
        "actions": args.actions,
        "load": args.load,
        "seconds": args.seconds,
        "repeat": args.repeat,
        "concurrency": CONCURRENCY,
        "deliveries_per_s": {k: spread(v) for k, v in rates.items()},
        "sink_vs_baseline": ratio,
        "latency_ms": {k: spread(v) for k, v in latencies.items()},
    }
    rows = [
        "| figure | min / median / max |",
        "|---|---|",
        f"| baseline: bare aiohttp client, {CONCURRENCY} concurrent (deliveries/s) | "
        f"{shown(figures['deliveries_per_s']['baseline'], ',.0f')} |",
        f"| sink drain (deliveries/s) | {shown(figures['deliveries_per_s']['sink'], ',.0f')} |",
        f"| sink / baseline (medians) | {ratio:.2f} |",
    ]
    for q in ("p50", "p95", "p99", "max"):
        rows.append(
            f"| action->delivery {q} at {args.load:.0%} of drain rate (ms) | "
            f"{shown(figures['latency_ms'][q], ',.1f')} |"
        )
    command = (
        f"python bench/notify_throughput.py --actions {args.actions} --load {args.load} "
        f"--seconds {args.seconds:g} --repeat {args.repeat}"
    )
    record_results(
        "notify-sink", "Notification sink throughput and latency", command, figures, "\n".join(rows)
    )


if __name__ == "__main__":
    main()
