"""Producing records to a topic and reading them back, as the tests and benchmarks do."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from leadscore.config import Settings
from leadscore.verify import read_topic
from tests.support.brokers import client_config
from tests.support.deadlines import RECORDS_S


def produce(
    bootstrap: str, topic: str, records: Sequence[tuple[bytes | None, bytes | None]]
) -> None:
    """Produce (key, value) records (None: a tombstone) and wait until each is acknowledged."""
    failures: list[Any] = []

    def delivered(error: Any, _message: Any) -> None:
        if error is not None:
            failures.append(error)

    producer = Producer(
        client_config(bootstrap, **{"enable.idempotence": True, "partitioner": "murmur2_random"})
    )
    for key, value in records:
        producer.produce(topic, key=key, value=value, on_delivery=delivered)
    left = producer.flush(30)
    assert left == 0, f"undelivered: {left}"
    assert not failures, f"delivery errors: {failures}"


def consume(bootstrap: str, topic: str, count: int, timeout: float = RECORDS_S) -> list[Any]:
    """Read ``count`` records from the start of every partition (fails if fewer arrive)."""
    consumer = Consumer(
        client_config(
            bootstrap,
            **{
                "group.id": f"test-reader-{time.monotonic_ns()}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            },
        )
    )
    metadata = consumer.list_topics(topic, timeout=10)
    consumer.assign([TopicPartition(topic, p, 0) for p in metadata.topics[topic].partitions])
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                got.append(msg)
    finally:
        consumer.close()
    assert len(got) >= count, (
        f"{topic}: expected {count} records, got {len(got)} within {timeout} s"
    )
    return got


def count_now(bootstrap: str, topic: str, settle: float = 3.0) -> int:
    """How many committed records a topic holds after ``settle`` seconds with nothing new.

    Records are read (``leadscore verify``'s reader), not offsets subtracted: a
    topic written in transactions (exactly_once) also holds a commit marker per
    transaction, which takes an offset but is no record.
    """
    time.sleep(settle)
    settings = Settings.from_variables({"LEADSCORE_BOOTSTRAP_SERVERS": bootstrap})
    return read_topic(settings, topic).records


def end_offsets(bootstrap: str, topic: str) -> int:
    """The sum of a topic's end offsets (records plus transaction markers)."""
    consumer = Consumer(client_config(bootstrap, **{"group.id": "leadscore-end-offsets"}))
    try:
        metadata = consumer.list_topics(topic, timeout=30).topics[topic]
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
            for p in metadata.partitions
        )
    finally:
        consumer.close()


def read_all(bootstrap: str, topic: str, timeout: float = RECORDS_S) -> list[Any]:
    """Every committed record of a topic, from the start of each partition to its end
    (read_committed: records of aborted transactions are not there)."""
    consumer = Consumer(
        client_config(
            bootstrap,
            **{
                "group.id": f"test-read-all-{time.monotonic_ns()}",
                "enable.partition.eof": True,
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
            },
        )
    )
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        pending, got = set(parts), []
        deadline = time.monotonic() + timeout
        while pending:
            assert time.monotonic() < deadline, f"{topic}: not read to its end in {timeout} s"
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                pending.discard(message.partition())
            else:
                got.append(message)
        return got
    finally:
        consumer.close()
