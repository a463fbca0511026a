"""Fault tier: a broker of its own (it is stopped and restarted by a scenario), and
the per-scenario figures printed at the end of the run."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from leadscore.scoring import Rules, load_rules
from tests.faults.harness import HEADERS, SCENARIO_TIMEOUT_S, Outcome, describe
from tests.integration.kafka import KAFKA_LOCAL, REPO, answers
from tests.integration.workers import WorkerProcess

PORT = int(os.environ.get("LEADSCORE_FAULTS_KAFKA_PORT", "19094"))
OUTCOMES: list[Outcome] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Scenarios outlast pytest's default timeout (300 s) only when stuck; their own
    deadlines then fail them first, with the workers' stacks in the logs."""
    for item in items:
        if "tests/faults" in str(item.fspath):
            item.add_marker(pytest.mark.timeout(SCENARIO_TIMEOUT_S))


@dataclass
class Broker:
    """The local KRaft broker of this tier, which scenarios may stop and start."""

    port: int
    home: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self, *args: str) -> None:
        env = {**os.environ, "KAFKA_LOCAL_HOME": str(self.home), "KAFKA_LOCAL_PORT": str(self.port)}
        done = subprocess.run(
            [str(KAFKA_LOCAL), *args], env=env, capture_output=True, text=True, timeout=600
        )
        if done.returncode != 0:
            raise RuntimeError(f"kafka-local {' '.join(args)} failed:\n{done.stderr[-3000:]}")

    def start(self, fresh: bool = False) -> None:
        self._run("start", *(["--fresh"] if fresh else []))

    def stop(self) -> None:
        self._run("stop")


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    """Always deploy/kafka-local (scenarios stop it), on its own port and data dir.

    It cannot be a shared cluster or a testcontainer: the outage scenario stops and
    restarts the broker in place. With CI set, a broker that cannot start fails.
    """
    b = Broker(PORT, REPO / ".kafka-local-faults")
    if answers(b.bootstrap, timeout=2):
        b.stop()
    try:
        b.start(fresh=True)
    except RuntimeError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"the fault tier needs its local broker (CI=true): {exc}")
        pytest.skip(f"no local broker for the fault tier: {exc}")
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="session")
def rules() -> Rules:
    return load_rules(None)


@pytest.fixture(autouse=True)
def no_worker_left() -> Iterator[None]:
    """Kill the workers a scenario left running (it failed before stopping them)."""
    yield
    for worker in WorkerProcess.launched:
        worker.kill()
    WorkerProcess.launched.clear()


@pytest.fixture
def record() -> Iterator[list[Outcome]]:
    """Outcomes a test adds here are printed in the session summary."""
    mine: list[Outcome] = []
    yield mine
    OUTCOMES.extend(mine)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not OUTCOMES:
        return
    rows = [HEADERS, *[describe(o) for o in OUTCOMES]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADERS))]
    terminalreporter.section("fault scenarios")
    for n, row in enumerate(rows):
        terminalreporter.write_line(
            "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        )
        if n == 0:
            terminalreporter.write_line("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for o in OUTCOMES:
        extra = [f"{o.duplicates_in} re-delivered and {o.unreadable_in} unreadable records in"]
        extra.append(f"{o.dead_letters} dead-lettered")
        extra.append(f"{o.timer_actions} actions from decay timers on {o.timer_leads} leads")
        if o.verify is not None:
            extra.append(
                f"verify: {o.verify.audited_events:,} audited events, "
                f"{o.verify.repeated_changes} repeated changes, "
                f"{o.verify.repeated_actions} repeated actions"
            )
        extra.extend(f"PROBLEM {problem}" for problem in o.problems())
        terminalreporter.write_line(f"{o.scenario} [{o.guarantee}]: " + "; ".join(extra))
        for example in o.examples:
            terminalreporter.write_line(f"  {example}")
