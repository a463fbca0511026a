"""A real Kafka broker for the tiers and the benchmarks, and the test clients' settings.

Integration tier (``integration_broker``): LEADSCORE_TEST_BOOTSTRAP (an existing cluster),
else testcontainers when a Docker engine answers, else the local KRaft broker of
deploy/kafka-local on its own port. Fault tier: always a ``LocalBroker`` (a
scenario stops and restarts it). bench/: ``ensure_broker`` (LEADSCORE_BOOTSTRAP_SERVERS
or deploy/kafka-local on 9092).
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from tenacity import (
    Retrying,
    before_sleep_log,
    retry_if_exception,
    stop_after_delay,
    wait_fixed,
)

REPO = Path(__file__).resolve().parents[2]
KAFKA_LOCAL = REPO / "deploy" / "kafka-local" / "kafka-local"
KAFKA_IMAGE = "apache/kafka:4.4.0"  # same version as deploy/kafka-local/pom.xml
TEST_PORT = int(os.environ.get("LEADSCORE_TEST_KAFKA_PORT", "19092"))

# librdkafka's own log lines (METADATAUPDATE, broker down, ...) go through Python
# logging under this name instead of straight to stderr, where they flooded the
# test log during broker restarts; tests/conftest.py sets its level.
LIBRDKAFKA_LOG = logging.getLogger("tests.librdkafka")

T = TypeVar("T")


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


def retrying(call: Callable[[], T], timeout: float = 60.0) -> T:
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


class BrokerUnavailableError(Exception):
    """No broker could be found or started."""


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


@dataclass
class LocalBroker:
    """deploy/kafka-local on one port with its own data directory."""

    port: int
    home: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self, *args: str, check: bool = True) -> int:
        env = {**os.environ, "KAFKA_LOCAL_HOME": str(self.home), "KAFKA_LOCAL_PORT": str(self.port)}
        done = subprocess.run(
            [str(KAFKA_LOCAL), *args], env=env, capture_output=True, text=True, timeout=600
        )
        if check and done.returncode != 0:
            raise BrokerUnavailableError(
                f"kafka-local {' '.join(args)} failed:\n{done.stderr[-3000:]}"
            )
        return done.returncode

    def start(self, fresh: bool = False) -> None:
        """Start it (resolving the jars on first use) and wait until it answers."""
        self._run("start", *(["--fresh"] if fresh else []))

    def stop(self, check: bool = True) -> None:
        self._run("stop", check=check)

    def running(self) -> bool:
        return self._run("status", check=False) == 0


#: The broker `make demo` and the benchmarks use (kafka-local's defaults).
DEFAULT_LOCAL = LocalBroker(9092, REPO / ".kafka-local")


@contextmanager
def integration_broker() -> Iterator[tuple[str, str]]:
    """The integration tier's broker: yield (bootstrap servers, how it was found)."""
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
    local = LocalBroker(TEST_PORT, REPO / ".kafka-local-test")
    already = answers(local.bootstrap, timeout=2)
    if not already:
        local.start(fresh=True)
    try:
        yield local.bootstrap, "deploy/kafka-local" + (" (already running)" if already else "")
    finally:
        if not already:
            local.stop(check=False)


def ensure_broker() -> tuple[str, bool]:
    """bench/: bootstrap servers, and whether this run started the broker."""
    given = os.environ.get("LEADSCORE_BOOTSTRAP_SERVERS")
    if given:
        return given, False
    running = DEFAULT_LOCAL.running()
    if not running:
        DEFAULT_LOCAL.start()
    return DEFAULT_LOCAL.bootstrap, not running


def stop_broker() -> None:
    DEFAULT_LOCAL.stop(check=False)
