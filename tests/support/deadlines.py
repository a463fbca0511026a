"""How long each wait of the harness may take, and pytest's timeouts beyond them.

A wait that runs out fails with its own message (and, for a process, the stacks
of every task it runs: see processes.Process.wait_ready). pytest-timeout only
cuts a test that is stuck somewhere no wait covers, so each tier's timeout lies
beyond what its waits add up to; tests/unit/test_test_support.py holds that.
"""

from __future__ import annotations

#: A worker or sink process logs that it is ready (start-up, recovery, assignment).
PROCESS_READY_S = 180.0
#: A worker's /readyz answers 200 (with the partitions asked for).
HTTP_READY_S = 180.0
#: Records a test expects appear on a topic.
RECORDS_S = 60.0
#: Something that follows an output (a metric, a commit, a sink's delivery) is seen.
EVENTUALLY_S = 60.0
#: A process stops on SIGTERM.
STOP_S = 60.0

#: pytest's timeout for a unit test (pyproject.toml's default).
UNIT_TEST_TIMEOUT_S = 300.0
#: pytest's timeout for an integration test: two processes ready, their records
#: and a stop in the worst case, with room (tests/integration/conftest.py).
INTEGRATION_TEST_TIMEOUT_S = 2 * PROCESS_READY_S + RECORDS_S + EVENTUALLY_S + STOP_S + 120.0

#: Fault tier. A scenario's producer delivers everything within this.
PRODUCER_DEADLINE_S = 360.0
#: Fault tier: the group commits the end of the events topic within this (then
#: every worker is asked for its stacks and the scenario fails).
COMMIT_DEADLINE_S = 240.0
#: pytest's timeout for a fault scenario (tests/faults/conftest.py): set-up and
#: production (under 2 min), both deadlines above, a worker's start, and margin.
SCENARIO_TIMEOUT_S = 120.0 + PRODUCER_DEADLINE_S + COMMIT_DEADLINE_S + PROCESS_READY_S
