"""Fault tier: a broker of its own (it is stopped and restarted by a scenario), and
the per-scenario figures printed at the end of the run."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from leadscore.scoring import Rules, load_rules
from tests.faults.harness import HEADERS, Outcome, describe
from tests.support.brokers import REPO, BrokerUnavailableError, LocalBroker, answers
from tests.support.deadlines import SCENARIO_TIMEOUT_S
from tests.support.processes import Process

PORT = int(os.environ.get("LEADSCORE_FAULTS_KAFKA_PORT", "19094"))
OUTCOMES: list[Outcome] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Scenarios outlast pytest's default timeout (300 s) only when stuck; their own
    deadlines then fail them first, with the workers' stacks in the logs."""
    for item in items:
        if "tests/faults" in str(item.fspath):
            item.add_marker(pytest.mark.timeout(SCENARIO_TIMEOUT_S))


@pytest.fixture(scope="session")
def broker() -> Iterator[LocalBroker]:
    """Always deploy/kafka-local (scenarios stop it), on its own port and data dir.

    It cannot be a shared cluster or a testcontainer: the outage scenario stops and
    restarts the broker in place. With CI set, a broker that cannot start fails.
    """
    b = LocalBroker(PORT, REPO / ".kafka-local-faults")
    if answers(b.bootstrap, timeout=2):
        b.stop()
    try:
        b.start(fresh=True)
    except BrokerUnavailableError as exc:
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
    for worker in Process.launched:
        worker.kill()
    Process.launched.clear()


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
