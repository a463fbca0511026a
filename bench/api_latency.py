"""Latency of ``GET /leads/{id}``: answered by the owner, and forwarded to it.

Two real workers in one consumer group on a real broker (the one in
LEADSCORE_BOOTSTRAP_SERVERS, else the local KRaft broker, started if it is not
running and stopped afterwards). The bench loads ``--contacts`` leads, waits
until both workers have handled every event, then sends sequential requests
over one keep-alive connection per worker, in shuffled order:

- ``healthz``: ``GET /healthz``, the floor of the HTTP stack (baseline);
- ``local``: a lead the receiving worker owns;
- ``forwarded``: a lead the other worker owns (one extra HTTP hop);
- ``top``: ``GET /leads?sort=score&limit=20``, the ranked list, which the receiving
  worker gathers from both (its own index and one request to the other);
- ``cooling``: ``GET /leads/cooling?within=30d&limit=20``, gathered the same way;
- ``account``: ``GET /accounts/{id}`` (ten contacts an account), asked of either
  worker: answered by the account's owner, forwarded half the time.

Each answer's ``X-Leadscore-Forwarded`` header confirms its class. Figures are
median and p99 per round, then min / median / max over ``--rounds`` rounds,
and ratios against the local median of the same run.

    python bench/api_latency.py --contacts 2000 --requests 1000 --rounds 3

Prints a table and writes bench/results/<date>-api-latency.{md,json}.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from common import percentile, progress, record_results, shown, spread
from confluent_kafka import Producer

from tests.support.brokers import ensure_broker, stop_broker
from tests.support.deployments import Deployment, prefixed_name
from tests.support.http import free_port, wait_until
from tests.support.processes import Process

KINDS = ("healthz", "local", "forwarded", "top", "cooling", "account")
LISTS = {"top": "/leads?sort=score&limit=20", "cooling": "/leads/cooling?within=30d&limit=20"}
SAMPLE = 2000  # leads whose owner is looked up for the local and forwarded kinds
WORKERS: list[Process] = []  # their logs are shown when the bench gives up


class Client:
    """One keep-alive HTTP connection to a worker."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def get(self, path: str) -> tuple[int, Any, dict[str, str]]:
        try:
            self.conn.request("GET", path)
            response = self.conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()  # the next request connects afresh
            raise
        return response.status, body, dict(response.getheaders())

    def timed(self, path: str) -> tuple[float, int, dict[str, str]]:
        started = time.perf_counter_ns()
        status, _, headers = self.get(path)
        return (time.perf_counter_ns() - started) / 1e6, status, headers


def wait_for(what: str, check: Callable[[], Any], timeout: float = 120.0) -> Any:
    """``check()`` once it is true; on a timeout the workers' logs are shown."""
    try:
        return wait_until(check, what, timeout, pause=0.5)
    except AssertionError as late:
        for worker in WORKERS:
            print(f"--- {worker.name}", worker.log_tail(15), sep="\n", file=sys.stderr)
        raise SystemExit(str(late)) from None


def handled(client: Client) -> float:
    _, body, _ = client.get("/metrics")
    return sum(
        float(line.split()[-1])
        for line in body.decode().splitlines()
        if line.startswith("leadscore_events_total{")
    )


def account_of(i: int) -> str:
    return f"acct-{i // 10:06d}"  # ten contacts an account


def load(bootstrap: str, topic: str, contacts: list[str]) -> int:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "partitioner": "murmur2_random",
            "linger.ms": 20,
            "enable.idempotence": True,  # retried batches keep their order
        }
    )
    now = int(time.time() * 1000)
    sent = 0
    for i, contact in enumerate(contacts):
        # spread over the last 5 days, so decay orders the ranked lists
        at = now - 60_000 - (i * 7919 % 432_000) * 1000
        for j, kind in enumerate(("signup", "page_view", "demo_request")[: 1 + i % 3]):
            event = {
                "event_id": f"{contact}-{j}",
                "contact_id": contact,
                "account_id": account_of(i),
                "type": kind,
            }
            value = orjson.dumps({**event, "occurred_at": at + j})
            while True:
                try:
                    producer.produce(topic, key=contact.encode(), value=value)
                    break
                except BufferError:  # the client's queue is full: let deliveries drain
                    producer.poll(0.1)
            producer.poll(0)
            sent += 1
        if i % 10_000 == 0:
            progress("producing", i, len(contacts))
    producer.flush(60)
    return sent


def measure(
    clients: list[Client],
    owner_of: dict[str, int],
    accounts: list[str],
    requests: int,
    rounds: int,
) -> dict[str, dict[str, list[float]]]:
    """Per kind: the median and p99 (ms) of each round."""
    contacts = sorted(owner_of)
    per_round: dict[str, dict[str, list[float]]] = {k: {"median": [], "p99": []} for k in KINDS}
    rng = random.Random(7)
    warm = [(i, f"/leads/{c}") for i in (0, 1) for c in rng.sample(contacts, 100)]
    for i, path in warm:
        clients[i].get(path)
    for r in range(rounds):
        plan: list[tuple[str, int, str]] = []
        for n in range(requests):
            contact = contacts[rng.randrange(len(contacts))]
            owner = owner_of[contact]
            plan.append(("healthz", n % 2, "/healthz"))
            plan.append(("local", owner, f"/leads/{contact}"))
            plan.append(("forwarded", owner ^ 1, f"/leads/{contact}"))
            for kind, path in LISTS.items():
                plan.append((kind, n % 2, path))
            plan.append(("account", n % 2, f"/accounts/{accounts[rng.randrange(len(accounts))]}"))
        rng.shuffle(plan)
        samples: dict[str, list[float]] = {k: [] for k in KINDS}
        for n, (kind, worker, path) in enumerate(plan, 1):
            ms, status, headers = clients[worker].timed(path)
            if status != 200:
                raise SystemExit(f"{path} on worker {worker}: HTTP {status}")
            was_forwarded = headers.get("X-Leadscore-Forwarded") == "1"
            if kind in ("local", "forwarded") and was_forwarded != (kind == "forwarded"):
                raise SystemExit(f"{path} on worker {worker}: expected {kind}")
            samples[kind].append(ms)
            progress(f"round {r + 1}/{rounds}", n, len(plan))
        for kind in KINDS:
            per_round[kind]["median"].append(statistics.median(samples[kind]))
            per_round[kind]["p99"].append(percentile(samples[kind], 0.99))
    return per_round


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=1000, help="per kind, per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--load-rate",
        type=float,
        default=0.0,
        help="events/s simulated traffic the workers score while measured (0: idle)",
    )
    args = parser.parse_args()

    bootstrap, started_broker = ensure_broker()
    with tempfile.TemporaryDirectory(prefix="leadscore-bench-") as tmp:
        deployment = Deployment(
            bootstrap,
            Path(tmp),
            prefixed_name("bench"),
            partitions=6,
            extra={"LEADSCORE_WEB_ENABLED": "true", "LEADSCORE_LOG_LEVEL": "warn"},
        )
        settings = deployment.settings()
        load_process: subprocess.Popen[bytes] | None = None
        try:
            deployment.create_topics()
            ports = [free_port(), free_port()]
            for i, port in enumerate(ports):
                worker = deployment.worker(
                    LEADSCORE_WEB_PORT=str(port), LEADSCORE_DATA_DIR=f"{tmp}/w{i}"
                )
                WORKERS.append(worker.launch())
            clients = [Client(port) for port in ports]

            def split() -> list[list[int]] | None:
                owned = []
                for client in clients:
                    status, body, _ = client.get("/readyz")
                    if status != 200:
                        return None
                    owned.append(orjson.loads(body)["partitions"])
                return owned if all(owned) and len(owned[0]) + len(owned[1]) == 6 else None

            print("bench: waiting for two ready workers ...", file=sys.stderr)
            owned = wait_for("both workers ready with the partitions split", split)
            contacts = [f"bench-{i:06d}" for i in range(args.contacts)]
            sent = load(bootstrap, settings.events_topic, contacts)
            print(f"bench: produced {sent} events for {len(contacts)} leads", file=sys.stderr)
            wait_for("every event handled", lambda: sum(handled(c) for c in clients) >= sent, 1800)
            owned = wait_for("a stable split", split)
            accounts = sorted({account_of(i) for i in range(len(contacts))})
            sampled = random.Random(6).sample(accounts, min(SAMPLE, len(accounts)))

            def rolled_up() -> bool:  # the account agent lags the leads a little
                return all(clients[0].get(f"/accounts/{a}")[0] == 200 for a in sampled[-50:])

            wait_for("the accounts rolled up", rolled_up, 600)
            owner_of = {}
            for contact in random.Random(5).sample(contacts, min(SAMPLE, len(contacts))):
                _, _, headers = clients[0].get(f"/leads/{contact}")
                owner_of[contact] = 1 if headers.get("X-Leadscore-Forwarded") == "1" else 0
            if args.load_rate:
                load_process = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "leadscore.cli",
                        "simulate",
                        "--rate",
                        str(args.load_rate),
                        "--duration",
                        "0",
                        "--quiet",
                        "--contacts",
                        "5000",
                        "--prefix",
                        "load-",
                    ],
                    env={**os.environ, **deployment.env},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(3)
            per_round = measure(clients, owner_of, sampled, args.requests, args.rounds)
        finally:
            if load_process is not None:
                load_process.terminate()
                load_process.wait(60)
            for worker in WORKERS:
                try:
                    worker.stop()
                except AssertionError as slow:
                    print(f"bench: {slow}", file=sys.stderr)
            if started_broker:
                stop_broker()

    local = statistics.median(per_round["local"]["median"])
    figures: dict[str, Any] = {
        "contacts": args.contacts,
        "requests_per_kind_per_round": args.requests,
        "rounds": args.rounds,
        "load_events_per_s": args.load_rate,
        "partitions_owned": owned,
        "ms": {k: {q: spread(v) for q, v in per_round[k].items()} for k in KINDS},
    }
    rows = [
        "| request | median ms (min / median / max of rounds) | p99 ms (min / median / max) "
        "| median vs local |",
        "|---|---|---|---|",
    ]
    labels = {
        "healthz": "`/healthz` (HTTP floor)",
        "local": "`/leads/{id}` on the owner",
        "forwarded": "`/leads/{id}` forwarded",
        "top": "`/leads?sort=score&limit=20` (both workers)",
        "cooling": "`/leads/cooling?within=30d&limit=20` (both workers)",
        "account": "`/accounts/{id}` (either worker: on the owner or forwarded)",
    }
    for kind in KINDS:
        ms = figures["ms"][kind]
        ratio = ms["median"]["median"] / local
        figures["ms"][kind]["ratio_to_local"] = ratio
        rows.append(
            f"| {labels[kind]} | {shown(ms['median'], '.2f')} | {shown(ms['p99'], '.2f')} "
            f"| {ratio:.2f}x |"
        )
    command = (
        f"python bench/api_latency.py --contacts {args.contacts} "
        f"--requests {args.requests} --rounds {args.rounds} --load-rate {args.load_rate:g}"
    )
    name = "api-latency" if args.contacts == 2000 else f"api-latency-{args.contacts}-leads"
    record_results(
        name if not args.load_rate else f"{name}-under-load",
        "GET /leads/{id} latency, local and forwarded",
        command,
        figures,
        "\n".join(rows),
    )


if __name__ == "__main__":
    main()
