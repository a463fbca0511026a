"""Running real `leadscore worker` processes against the test broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from leadscore.config import Settings
from leadscore.kafka_admin import create_topics

READY_LINE = "[^Worker]: Ready"


@dataclass
class Deployment:
    """One isolated leadscore deployment: its own topics, group and state directory."""

    bootstrap: str
    root: Path
    name: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:10]}")
    partitions: int = 3
    extra: dict[str, str] = field(default_factory=dict)  # more LEADSCORE_* settings

    @property
    def env(self) -> dict[str, str]:
        return {
            "LEADSCORE_BOOTSTRAP_SERVERS": self.bootstrap,
            "LEADSCORE_APP_ID": f"leadscore-{self.name}",
            "LEADSCORE_EVENTS_TOPIC": f"{self.name}.events",
            "LEADSCORE_ACTIONS_TOPIC": f"{self.name}.actions",
            "LEADSCORE_LEAD_STATE_TOPIC": f"{self.name}.lead-state",
            "LEADSCORE_SCORE_CHANGES_TOPIC": f"{self.name}.score-changes",
            "LEADSCORE_DLQ_TOPIC": f"{self.name}.dlq",
            "LEADSCORE_ASSIGNMENTS_TOPIC": f"{self.name}.assignments",
            "LEADSCORE_TICKS_TOPIC": f"{self.name}.ticks",
            "LEADSCORE_SINK_DLQ_TOPIC": f"{self.name}.sink-dlq",
            "LEADSCORE_SINK_DATA_DIR": str(self.root / "sink-data"),
            "LEADSCORE_SINK_METRICS_PORT": "0",
            "LEADSCORE_SINK_SESSION_TIMEOUT_SECONDS": "6",
            "LEADSCORE_PARTITIONS": str(self.partitions),
            "LEADSCORE_DATA_DIR": str(self.root / "state"),
            "LEADSCORE_WEB_ENABLED": "false",
            **self.extra,
        }

    def topic(self, kind: str) -> str:
        return f"{self.name}.{kind}"

    def settings(self) -> Settings:
        return Settings.from_variables(self.env)

    def create_topics(self) -> None:
        create_topics(self.settings())

    def worker(self, **env: str) -> WorkerProcess:
        """A worker; ``env`` overrides settings for this worker only (port, data dir)."""
        return WorkerProcess(self, self.root / f"worker-{time.monotonic_ns()}.log", env)

    def routing_sink(self, config: Path, **env: str) -> WorkerProcess:
        """A `leadscore sink routing` process; ready once it has partitions assigned."""
        return WorkerProcess(
            self,
            self.root / f"routing-{time.monotonic_ns()}.log",
            env,
            command=["sink", "routing", "--config", str(config)],
            ready_line="routing: assigned partitions",
        )

    def notify_sink(self, config: Path, **env: str) -> WorkerProcess:
        """A `leadscore sink notify` process; ready once it has partitions assigned."""
        return WorkerProcess(
            self,
            self.root / f"notify-{time.monotonic_ns()}.log",
            env,
            command=["sink", "notify", "--config", str(config)],
            ready_line="notify: assigned partitions",
        )


class WorkerProcess:
    #: Every process launched in this test session, so a fixture can kill what a
    #: failed test left running (one whose broker is gone would spin on reconnects).
    launched: ClassVar[list[WorkerProcess]] = []

    def __init__(
        self,
        deployment: Deployment,
        log_path: Path,
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
        ready_line: str = READY_LINE,
    ) -> None:
        self.deployment = deployment
        self.log_path = log_path
        self.own_env = env or {}
        self.command = command or ["worker"]
        self.ready_line = ready_line
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_timeout: float = 90.0) -> WorkerProcess:
        """Launch it and wait until it is ready."""
        return self.launch().wait_ready(ready_timeout)

    def launch(self) -> WorkerProcess:
        """Start the process without waiting for it to be ready."""
        env = {**os.environ, **self.deployment.env, **self.own_env}
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "leadscore.cli", *self.command],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        WorkerProcess.launched.append(self)
        return self

    def wait_ready(self, timeout: float = 90.0) -> WorkerProcess:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.command[0]} exited with {self.proc.returncode}:\n{self.log()[-4000:]}"
                )
            if self.ready_line in self.log():
                return self
            time.sleep(0.25)
        raise AssertionError(f"worker not ready within {timeout} s:\n{self.log()[-4000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait: a clean stop commits offsets and closes RocksDB."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(
                    f"worker ignored SIGTERM for {timeout} s:\n{self.log()[-3000:]}"
                ) from None
        return self.proc.returncode

    def kill(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
