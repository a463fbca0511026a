"""The test harness's own helpers that need no broker."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException

from tests.support import deadlines as d
from tests.support.brokers import retrying


def test_a_coordinator_still_loading_is_asked_again_and_other_errors_are_not() -> None:
    """A fresh-clone CI run failed on NOT_COORDINATOR right after a broker restart. The
    client raises it with retriable() False, so the harness names such codes itself."""
    answers = [KafkaException(KafkaError(KafkaError.NOT_COORDINATOR))] * 2 + ["offsets"]

    def committed() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert retrying(committed, timeout=10) == "offsets"

    def refused() -> None:
        raise KafkaException(KafkaError(KafkaError.GROUP_AUTHORIZATION_FAILED))

    with pytest.raises(KafkaException):
        retrying(refused, timeout=10)


def test_each_tier_timeout_lies_beyond_the_waits_of_its_harness() -> None:
    """pytest-timeout cuts a test without a word from the processes it runs; the
    harness's own waits ask them for their stacks first, so they must run out first."""
    one_process = d.PROCESS_READY_S + d.RECORDS_S + d.EVENTUALLY_S + d.STOP_S
    assert one_process + d.PROCESS_READY_S < d.INTEGRATION_TEST_TIMEOUT_S  # two workers
    assert d.SCENARIO_TIMEOUT_S > d.PRODUCER_DEADLINE_S + d.COMMIT_DEADLINE_S + d.PROCESS_READY_S
    assert pytest_timeout_of_pyproject() == d.UNIT_TEST_TIMEOUT_S


def pytest_timeout_of_pyproject() -> float:
    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    return float(tomllib.loads(text)["tool"]["pytest"]["ini_options"]["timeout"])


def test_every_benchmark_imports_with_the_shared_harness() -> None:
    """bench/ scripts run as ``python bench/<name>.py`` and reach tests/support through
    bench/common.py; an import that only works from the test runner fails here."""
    bench = Path(__file__).resolve().parents[2] / "bench"
    names = sorted(p.stem for p in bench.glob("*.py") if p.stem != "peer_quix")  # peer's venv
    script = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    done = subprocess.run(
        [sys.executable, "-c", script, *names],
        cwd="/",
        env={**os.environ, "PYTHONPATH": str(bench)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
