"""Drain throughput of one worker over events produced beforehand.

The events are produced once to a topic (seeded traffic model, so producing is
not what is measured); each run is a fresh worker (own app id, group, state
and output topics) that reads that topic from the beginning. Throughput is
taken from the lead-state records the worker wrote (one per scored event):
their count over the span of their Kafka timestamps, first to last.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
from common import deployment_env, progress
from confluent_kafka import Consumer, Producer, TopicPartition

from leadscore.config import Settings
from leadscore.kafka_admin import create_topics
from leadscore.simulate import TrafficModel

PARTITIONS = 6


def produce_workload(bootstrap: str, root: Path, events: int, contacts: int, seed: int) -> str:
    """A fresh events topic holding ``events`` seeded events; its name."""
    env = deployment_env(bootstrap, root / "workload")
    create_topics(Settings.from_variables(env))
    topic = env["LEADSCORE_EVENTS_TOPIC"]
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 1_000_000})
    model = TrafficModel(contacts, seed=seed, prefix="drain-")
    start = int(time.time() * 1000) - events  # event times 1 ms apart, ending now
    for i, event in enumerate(model.events(events, start), start=1):
        producer.produce(topic, key=event["contact_id"].encode(), value=orjson.dumps(event))
        if i % 1000 == 0:
            producer.poll(0)
        progress("produce", i, events)
    producer.flush(60)
    return topic


@dataclass(frozen=True)
class Drain:
    records: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds


def lead_state_span(bootstrap: str, topic: str, expected: int, timeout: float) -> Drain:
    """Read ``expected`` records of ``topic``: their count and first-to-last timestamp span."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"drain-reader-{time.monotonic_ns()}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    first, last, count = None, None, 0
    deadline = time.monotonic() + timeout
    try:
        while count < expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} of {expected} lead-state records within {timeout} s")
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


def drain_once(
    bootstrap: str, root: Path, events_topic: str, expected: int, **settings: str
) -> Drain:
    """One fresh worker over ``events_topic``; ``settings`` are extra LEADSCORE_* values."""
    root.mkdir(parents=True)
    env = {
        **deployment_env(bootstrap, root),
        "LEADSCORE_EVENTS_TOPIC": events_topic,
        "LEADSCORE_WEB_ENABLED": "false",
        "LEADSCORE_PARTITIONS": str(PARTITIONS),
        "LEADSCORE_DATA_DIR": str(root / "state"),
        **settings,
    }
    create_topics(Settings.from_variables(env))
    log = (root / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "leadscore.cli", "worker"],
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        return lead_state_span(bootstrap, env["LEADSCORE_LEAD_STATE_TOPIC"], expected, 900)
    finally:
        worker.terminate()
        worker.wait(60)
