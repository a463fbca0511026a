"""Integration tier: a real Kafka broker, real worker processes, real RocksDB."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.brokers import BrokerUnavailableError, integration_broker
from tests.support.deadlines import INTEGRATION_TEST_TIMEOUT_S
from tests.support.deployments import Deployment
from tests.support.processes import Process

BROKER_USED: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in BROKER_USED:
        terminalreporter.write_line(f"integration broker: {line}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marked, and given a timeout beyond what the harness's own waits add up to
    (tests/support/deadlines.py), so a stuck test fails with their message first."""
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.timeout(INTEGRATION_TEST_TIMEOUT_S))


@pytest.fixture(scope="session")
def kafka() -> Iterator[str]:
    """Bootstrap servers of a real broker. With CI=true a missing broker fails the run."""
    try:
        with integration_broker() as (bootstrap, how):
            BROKER_USED.append(f"{bootstrap} via {how}")
            yield bootstrap
    except BrokerUnavailableError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"no Kafka broker for the integration tests (CI=true): {exc}")
        pytest.skip(f"no Kafka broker: {exc}")


@pytest.fixture
def deployment(kafka: str, tmp_path: Path) -> Deployment:
    """A fresh deployment (own topics, group, state dir) with its topics created."""
    d = Deployment(kafka, tmp_path)
    d.create_topics()
    return d


@pytest.fixture
def start_worker(deployment: Deployment) -> Iterator[Callable[..., Process]]:
    """Start worker processes for the test's deployment; all are stopped afterwards."""
    started: list[Process] = []

    def start(**env: str) -> Process:
        worker = deployment.worker(**env).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()
