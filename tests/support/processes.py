"""A process the tests or benchmarks run (a leadscore worker or sink, the limit loop,
the peer), with its log, readiness, stop and stacks."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import ClassVar

from tests.support.deadlines import PROCESS_READY_S, STOP_S

#: What a Faust worker logs once it is ready.
WORKER_READY_LINE = "[^Worker]: Ready"


class Process:
    #: Every process launched in this interpreter, so a fixture can kill what a
    #: failed test left running (one whose broker is gone would spin on reconnects).
    launched: ClassVar[list[Process]] = []

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        log_path: Path,
        ready_line: str | None = WORKER_READY_LINE,
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = env  # on top of os.environ
        self.log_path = log_path
        self.ready_line = ready_line
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = time.monotonic()

    @property
    def popen(self) -> subprocess.Popen[bytes]:
        if self.proc is None:
            raise RuntimeError(f"{self.name} was not launched")
        return self.proc

    @property
    def pid(self) -> int:
        return self.popen.pid

    def start(self, ready_timeout: float = PROCESS_READY_S) -> Process:
        """Launch it and wait until it is ready."""
        return self.launch().wait_ready(ready_timeout)

    def launch(self) -> Process:
        """Start the process without waiting for it to be ready."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.started = time.monotonic()
        Process.launched.append(self)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def alive(self) -> None:
        """Raise if it has exited (for the waits' ``alive``)."""
        if self.popen.poll() is not None:
            raise AssertionError(
                f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}"
            )

    def wait_ready(self, timeout: float = PROCESS_READY_S) -> Process:
        """Until its log shows the ready line. On a timeout it is asked for its stacks
        first (SIGUSR1: mode's Worker writes every thread's and task's stack to its
        log), so the failure shows where it was waiting."""
        if self.ready_line is None:
            return self
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.alive()
            if self.ready_line in self.log():
                return self
            time.sleep(0.25)
        self.dump_stacks()
        raise AssertionError(f"{self.name} not ready within {timeout} s:\n{self.log_tail(80)}")

    def dump_stacks(self) -> None:
        """SIGUSR1, on which a leadscore process writes its stacks to its log."""
        if self.running():
            self.popen.send_signal(signal.SIGUSR1)
            time.sleep(2.0)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def peak_rss(self) -> int:
        """Its peak resident set so far (VmHWM), in bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmHWM in /proc status")

    def stop(self, timeout: float = STOP_S) -> int:
        """SIGTERM and wait (a clean stop commits offsets and closes RocksDB); the exit
        code. One that ignores SIGTERM is killed and fails."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.dump_stacks()
                self.kill()
                raise AssertionError(
                    f"{self.name} ignored SIGTERM for {timeout} s:\n{self.log_tail(80)}"
                ) from None
        return self.popen.returncode

    def kill(self) -> None:
        if self.running():
            self.popen.kill()
            self.popen.wait()
