"""Finding a real Kafka broker for the integration tier, and reading/writing topics.

Order: LEADSCORE_TEST_BOOTSTRAP (an existing cluster), else testcontainers when
a Docker engine answers, else the local KRaft broker from deploy/kafka-local.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from tenacity import (
    Retrying,
    before_sleep_log,
    retry_if_exception,
    stop_after_delay,
    wait_fixed,
)

from leadscore.config import Settings
from leadscore.verify import read_topic

REPO = Path(__file__).resolve().parents[2]
KAFKA_LOCAL = REPO / "deploy" / "kafka-local" / "kafka-local"
KAFKA_IMAGE = "apache/kafka:4.4.0"  # same version as deploy/kafka-local/pom.xml
TEST_PORT = int(os.environ.get("LEADSCORE_TEST_KAFKA_PORT", "19092"))


# librdkafka's own log lines (METADATAUPDATE, broker down, ...) go through Python
# logging under this name instead of straight to stderr, where they flooded the
# test log during broker restarts; tests/conftest.py sets its level.
LIBRDKAFKA_LOG = logging.getLogger("tests.librdkafka")


def client_config(bootstrap: str, **extra: Any) -> dict[str, Any]:
    """Settings of a test's confluent-kafka client: the broker, and librdkafka's logs kept."""
    return {"bootstrap.servers": bootstrap, "logger": LIBRDKAFKA_LOG, **extra}


# Errors of a cluster that is coming back. Synchronous client calls (committed(),
# list_topics()) raise KafkaError built from a bare error code, whose retriable()
# is always False, so the codes are named here.
RETRIABLE_CODES = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NETWORK_EXCEPTION,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
    }
)


def _retriable(exc: BaseException) -> bool:
    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    return isinstance(error, KafkaError) and (error.retriable() or error.code() in RETRIABLE_CODES)


def retrying(call: Any, timeout: float = 60.0) -> Any:
    """``call()``, again while it raises a retriable Kafka error, until ``timeout``.

    Right after a broker restart the group coordinator is still loading and answers
    NOT_COORDINATOR or COORDINATOR_LOAD_IN_PROGRESS: retriable, not a failure.
    """
    for attempt in Retrying(
        retry=retry_if_exception(_retriable),
        stop=stop_after_delay(timeout),
        wait=wait_fixed(1.0),
        before_sleep=before_sleep_log(LIBRDKAFKA_LOG, logging.INFO),
        reraise=True,
    ):
        with attempt:
            return call()
    raise AssertionError("unreachable: Retrying returns or raises")


class BrokerUnavailableError(RuntimeError):
    pass


def answers(bootstrap: str, timeout: float = 5.0) -> bool:
    try:
        AdminClient(client_config(bootstrap)).list_topics(timeout=timeout)
        return True
    except KafkaException:
        return False


def docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


@contextmanager
def broker() -> Iterator[tuple[str, str]]:
    """Yield (bootstrap servers, how it was found)."""
    given = os.environ.get("LEADSCORE_TEST_BOOTSTRAP")
    if given:
        if not answers(given, timeout=15):
            raise BrokerUnavailableError(f"LEADSCORE_TEST_BOOTSTRAP={given} does not answer")
        yield given, "LEADSCORE_TEST_BOOTSTRAP"
        return
    if docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer(KAFKA_IMAGE).with_kraft() as container:
            yield container.get_bootstrap_server(), f"testcontainers {KAFKA_IMAGE}"
        return
    yield from _local_broker()


def _local_broker() -> Iterator[tuple[str, str]]:
    env = {
        **os.environ,
        "KAFKA_LOCAL_HOME": str(REPO / ".kafka-local-test"),
        "KAFKA_LOCAL_PORT": str(TEST_PORT),
    }
    bootstrap = f"127.0.0.1:{TEST_PORT}"
    already = answers(bootstrap, timeout=2)
    if not already:
        started = subprocess.run(
            [str(KAFKA_LOCAL), "start", "--fresh"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if started.returncode != 0:
            raise BrokerUnavailableError(f"kafka-local could not start:\n{started.stderr[-3000:]}")
    try:
        yield bootstrap, "deploy/kafka-local" + (" (already running)" if already else "")
    finally:
        if not already:
            subprocess.run([str(KAFKA_LOCAL), "stop"], env=env, capture_output=True, timeout=120)


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    """Produce (key, value) records and wait until every one is acknowledged."""
    failures: list[Any] = []
    producer = Producer(
        client_config(bootstrap, **{"enable.idempotence": True, "partitioner": "murmur2_random"})
    )
    for key, value in records:
        producer.produce(
            topic, key=key, value=value, on_delivery=lambda err, _m: err and failures.append(err)
        )
    left = producer.flush(30)
    assert left == 0, f"undelivered: {left}"
    assert not failures, f"delivery errors: {failures}"


def consume(bootstrap: str, topic: str, count: int, timeout: float = 60.0) -> list[Any]:
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
