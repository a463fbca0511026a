"""The three systems the benchmark runs side by side, and how each is measured.

- leadscore: one worker (``leadscore worker``), default settings.
- limit: bench/limit_loop.py, the least a Python consumer-producer can do per event.
- peer: bench/peer_quix.py, the same rules on Quix Streams (in .venv-peer).

Every run is a fresh deployment (own topics, group and state directory). The
topics a run is measured on are created with ``message.timestamp.type=LogAppendTime``,
so record timestamps are the broker's append times whichever client wrote
them (Quix Streams forwards the input's timestamp by default).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
from common import percentile, progress
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from workload import Workload

from tests.support import deployments as support
from tests.support.http import free_port, wait_http
from tests.support.processes import Process
from tests.support.records import end_offsets

HERE = Path(__file__).resolve().parent
PEER_PYTHON = HERE.parent / ".venv-peer" / "bin" / "python"
PARTITIONS = 6
SYSTEMS = ("leadscore", "limit", "peer")
#: Drained too (no latency runs): both stream processors under exactly_once.
EXACTLY_ONCE = ("leadscore-eos", "peer-eos")


class Deployment(support.Deployment):
    """A run's deployment: its own topics, app id and state directory, six partitions,
    and the measured topics stamped with the broker's append time."""

    @classmethod
    def fresh(cls, bootstrap: str, root: Path, events_topic: str | None = None) -> Deployment:
        root.mkdir(parents=True)
        extra = {"LEADSCORE_LOG_LEVEL": "warn"}
        if events_topic:
            extra["LEADSCORE_EVENTS_TOPIC"] = events_topic
        deployment = cls(bootstrap, root, support.prefixed_name("bench"), PARTITIONS, extra)
        deployment.create_topics()
        deployment.append_time(deployment.counted, deployment.actions)
        return deployment

    @property
    def events(self) -> str:
        return self.topic("events")

    @property
    def counted(self) -> str:
        """One record per scored event: the lead-state topic (the limit loop's output too)."""
        return self.topic("lead-state")

    @property
    def actions(self) -> str:
        return self.topic("actions")

    @property
    def group(self) -> str:
        return self.app_id


class Running(Process):
    """A system under measurement: where its state is kept and its web port, if any."""

    state_dir: Path | None = None
    web_port: int | None = None

    def finish(self) -> int:
        """Stop it (SIGTERM, then SIGKILL after 90 s); its peak RSS in bytes."""
        rss = self.peak_rss()
        try:
            self.stop(90)
        except AssertionError as slow:
            print(f"bench: {slow}", file=sys.stderr)
        return rss


def start(system: str, deployment: Deployment, web: bool = False) -> Running:
    env = dict(deployment.env)
    log_path = deployment.root / f"{system}.log"
    state_dir: Path | None = None
    port = None
    if system in ("leadscore", "leadscore-eos"):
        state_dir = Path(env["LEADSCORE_DATA_DIR"])
        if system == "leadscore-eos":
            env["LEADSCORE_PROCESSING_GUARANTEE"] = "exactly_once"
        if web:
            port = free_port()
            env.update(LEADSCORE_WEB_ENABLED="true", LEADSCORE_WEB_PORT=str(port))
        command = [sys.executable, "-m", "leadscore.cli", "worker"]
    elif system == "limit":
        command = [
            sys.executable,
            str(HERE / "limit_loop.py"),
            deployment.bootstrap,
            deployment.group,
            deployment.events,
            deployment.counted,
        ]
    elif system in ("peer", "peer-eos"):
        state_dir = deployment.root / "quix-state"
        command = [
            str(PEER_PYTHON),
            str(HERE / "peer_quix.py"),
            deployment.bootstrap,
            deployment.group,
            str(state_dir),
            deployment.events,
            deployment.counted,
            deployment.topic("score-changes"),
            deployment.actions,
            "exactly-once" if system == "peer-eos" else "at-least-once",
        ]
    else:
        raise ValueError(system)
    running = Running(system, command, env, log_path, ready_line=None)
    running.state_dir, running.web_port = state_dir, port
    running.launch()
    return running


def changelog_records(bootstrap: str, app_id: str) -> int:
    """Records in the app's changelog topics (what a recovery from scratch reads)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [
        n
        for n in admin.list_topics(timeout=30).topics
        if n.startswith(app_id) and n.endswith("-changelog")
    ]
    return sum(end_offsets(bootstrap, n) for n in names)


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def table_bytes(state_dir: Path) -> dict[str, int]:
    """A Faust state directory's bytes by table (``v*/tables/<table>-<partition>.db``)."""
    sizes: dict[str, int] = {}
    for store in state_dir.glob("v*/tables/*.db"):
        table = store.name.rsplit("-", 1)[0]
        sizes[table] = sizes.get(table, 0) + dir_bytes(store)
    return sizes


@dataclass(frozen=True)
class Drain:
    records: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds


def drain(
    bootstrap: str, topic: str, expected: int, timeout: float, running: Running | None = None
) -> Drain:
    """Read ``expected`` records of ``topic``: their count over the first-to-last append span."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-reader-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            # If a fetch is ever out of range, read again rather than skip to the end.
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    first, last, count = None, None, 0
    deadline = time.monotonic() + timeout
    try:
        while count < expected:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{count} of {expected} records read from {topic} within {timeout} s; "
                    f"the topic holds {end_offsets(bootstrap, topic)}"
                    + (f"; {running.name}'s log: {running.log_tail()}" if running else "")
                )
            if running is not None and running.popen.poll() is not None:
                raise RuntimeError(f"{running.name} exited with {running.popen.returncode}")
            for message in consumer.consume(10_000, timeout=1.0):
                if message.error():
                    continue
                _, ts = message.timestamp()
                first = ts if first is None else min(first, ts)
                last = ts if last is None else max(last, ts)
                count += 1
            if count:
                progress("drain", min(count, expected), expected)
    finally:
        consumer.close()
    assert first is not None
    assert last is not None
    return Drain(count, max(0.001, (last - first) / 1000))


def wait_ready(running: Running, deployment: Deployment, warmup: int = 30) -> float:
    """Seconds until the system answers: warm-up events in, their records out."""
    producer = Producer({"bootstrap.servers": deployment.bootstrap, "enable.idempotence": True})
    now = int(time.time() * 1000)
    for i, event in enumerate(Workload(10, seed=1, prefix="warmup-").events(warmup, now, 1)):
        event["event_id"] = f"warmup-{i}"
        producer.produce(
            deployment.events, key=event["contact_id"].encode(), value=orjson.dumps(event)
        )
    producer.flush(30)
    deadline = time.monotonic() + 180
    while True:
        try:
            if end_offsets(deployment.bootstrap, deployment.counted) >= warmup:
                break
        except KafkaException:  # a new topic's leaders are still being elected
            pass
        if running.popen.poll() is not None:
            raise RuntimeError(f"{running.name} exited with {running.popen.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{running.name} did not process warm-up events in 180 s")
        time.sleep(0.5)
    return time.monotonic() - running.started


def wait_http_ready(running: Running, timeout: float) -> float:
    """Seconds from start until the worker's /readyz answers 200 (recovery done)."""

    def alive() -> None:
        if running.popen.poll() is not None:
            raise RuntimeError(f"{running.name} exited with {running.popen.returncode}")

    remaining = timeout - (time.monotonic() - running.started)
    wait_http(f"http://127.0.0.1:{running.web_port}/readyz", remaining, alive)
    return time.monotonic() - running.started


@dataclass(frozen=True)
class Latency:
    offered: float  # events/s actually sent
    samples: list[float]  # seconds, event sent -> its output consumed

    def summary(self) -> dict[str, float]:
        s = self.samples
        return {
            "offered": self.offered,
            "n": len(s),
            "p50": percentile(s, 0.50),
            "p95": percentile(s, 0.95),
            "p99": percentile(s, 0.99),
            "max": max(s),
        }


class OutputClock(threading.Thread):
    """Consumes a topic as it is written: the first time each event id's output is seen."""

    def __init__(self, bootstrap: str, topic: str, key_of: Callable[[dict[str, object]], object]):
        super().__init__(daemon=True)
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-clock-{time.monotonic_ns()}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 5,
                "auto.offset.reset": "earliest",
            }
        )
        self.consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        self.key_of = key_of
        self.seen: dict[str, float] = {}
        self.last_seen = time.monotonic()
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            for message in self.consumer.consume(1000, timeout=0.05):
                if message.error():
                    continue
                at = time.time()
                key = self.key_of(orjson.loads(message.value() or b"null"))
                if isinstance(key, str) and key not in self.seen:
                    self.seen[key] = at
                    self.last_seen = time.monotonic()
        self.consumer.close()


def offer(system: str, deployment: Deployment, rate: float, seconds: float, seed: int) -> Latency:
    """Produce live at ``rate`` events/s for ``seconds``; event -> output latency.

    The output is the action record (leadscore, peer: by ``cause_event_id``) or, for
    the limit loop, its one record per event (by ``event_id``).
    """
    if system == "limit":
        clock = OutputClock(deployment.bootstrap, deployment.counted, lambda v: v.get("event_id"))
    else:
        clock = OutputClock(
            deployment.bootstrap, deployment.actions, lambda v: v.get("cause_event_id")
        )
    clock.start()
    producer = Producer(
        {"bootstrap.servers": deployment.bootstrap, "linger.ms": 1, "enable.idempotence": True}
    )
    total = max(1, int(rate * seconds))
    # About 10 events per contact, so leads climb through the stages and cross thresholds.
    workload = Workload(max(50, total // 10), seed=seed, prefix="live-")
    sent: dict[str, float] = {}
    begin = time.monotonic()
    for i, event in enumerate(workload.events(total, int(time.time() * 1000), 0), start=1):
        due = begin + (i - 1) / rate
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        event["occurred_at"] = int(time.time() * 1000)
        value = orjson.dumps(event)
        sent[event["event_id"]] = time.time()
        producer.produce(deployment.events, key=event["contact_id"].encode(), value=value)
        producer.poll(0)
        progress(f"{system} {rate:,.0f}/s", i, total)
    elapsed = time.monotonic() - begin
    producer.flush(30)
    # Outputs of the last events: wait until none has come for 3 s (at most 60 s).
    deadline = time.monotonic() + 60
    while time.monotonic() - clock.last_seen < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    clock.halt.set()
    clock.join(10)
    samples = [at - sent[key] for key, at in clock.seen.items() if key in sent]
    if not samples:
        raise RuntimeError(f"{system}: no outputs for the {total} events offered at {rate}/s")
    return Latency(total / elapsed, samples)
