"""A worker told to stop exits within LEADSCORE_STOP_TIMEOUT_SECONDS even if its stop hangs."""

from __future__ import annotations

import subprocess
import sys

from leadscore.stream.app import EXIT_STOP_TIMED_OUT

HANGING_STOP = """
import logging, time
from leadscore.stream.app import start_stop_watchdog
logging.basicConfig()
start_stop_watchdog(0.2)
time.sleep(120)  # a stop waiting on a Kafka cluster that is gone
"""


def test_a_stop_that_hangs_exits_75_and_says_why() -> None:
    done = subprocess.run(
        [sys.executable, "-c", HANGING_STOP], capture_output=True, text=True, timeout=100
    )
    assert done.returncode == EXIT_STOP_TIMED_OUT == 75, done.stderr
    assert "did not stop within LEADSCORE_STOP_TIMEOUT_SECONDS=0.2" in done.stderr
