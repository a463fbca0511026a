"""One isolated leadscore deployment: its own topics, consumer group and directories."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported at runtime, not declared in its stubs
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
)

from leadscore.config import Settings
from leadscore.kafka_admin import create_topics
from tests.support.brokers import client_config
from tests.support.processes import WORKER_READY_LINE, Process

#: The topics a deployment names, as LEADSCORE_<KIND>_TOPIC settings.
TOPICS = (
    "events",
    "actions",
    "lead-state",
    "score-changes",
    "dlq",
    "assignments",
    "ticks",
    "handoff",
    "privacy",
    "privacy-receipts",
    "sink-dlq",
    "account-updates",
    "account-state",
    "account-actions",
)


def prefixed_name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@dataclass
class Deployment:
    """Topics ``<name>.<kind>``, app id ``leadscore-<name>``, state under ``root``."""

    bootstrap: str
    root: Path
    name: str = field(default_factory=lambda: prefixed_name("t"))
    partitions: int = 3
    extra: dict[str, str] = field(default_factory=dict)  # more LEADSCORE_* settings

    @property
    def env(self) -> dict[str, str]:
        return {
            "LEADSCORE_BOOTSTRAP_SERVERS": self.bootstrap,
            "LEADSCORE_APP_ID": self.app_id,
            **{
                f"LEADSCORE_{kind.upper().replace('-', '_')}_TOPIC": f"{self.name}.{kind}"
                for kind in TOPICS
            },
            "LEADSCORE_SINK_DATA_DIR": str(self.root / "sink-data"),
            "LEADSCORE_SINK_METRICS_PORT": "0",
            "LEADSCORE_SINK_SESSION_TIMEOUT_SECONDS": "6",
            "LEADSCORE_PARTITIONS": str(self.partitions),
            "LEADSCORE_DATA_DIR": str(self.root / "state"),
            "LEADSCORE_WEB_ENABLED": "false",
            "LEADSCORE_PRIVACY_KEY": "test-privacy-key-0123456789",
            **self.extra,
        }

    @property
    def app_id(self) -> str:
        return f"leadscore-{self.name}"

    def topic(self, kind: str) -> str:
        """The topic of a kind (``events``, ``lead-state``, ...), as the settings say."""
        return self.env[f"LEADSCORE_{kind.upper().replace('-', '_')}_TOPIC"]

    def settings(self) -> Settings:
        return Settings.from_variables(self.env)

    def create_topics(self) -> None:
        create_topics(self.settings())

    def leadscore(
        self, label: str, command: list[str], ready_line: str | None, **env: str
    ) -> Process:
        """A ``leadscore <command>`` process; ``env`` overrides settings for it only."""
        return Process(
            f"{label} ({self.name})",
            [sys.executable, "-m", "leadscore.cli", *command],
            {**self.env, **env},
            self.root / f"{label}-{time.monotonic_ns()}.log",
            ready_line,
        )

    def worker(self, **env: str) -> Process:
        """A worker (port, data dir and other settings in ``env``)."""
        return self.leadscore("worker", ["worker"], WORKER_READY_LINE, **env)

    def routing_sink(self, config: Path, **env: str) -> Process:
        """A `leadscore sink routing` process; ready once it has partitions assigned."""
        return self.leadscore(
            "routing",
            ["sink", "routing", "--config", str(config)],
            "routing: assigned partitions",
            **env,
        )

    def notify_sink(self, config: Path, **env: str) -> Process:
        """A `leadscore sink notify` process; ready once it has partitions assigned."""
        return self.leadscore(
            "notify",
            ["sink", "notify", "--config", str(config)],
            "notify: assigned partitions",
            **env,
        )

    def append_time(self, *topics: str) -> None:
        """Make the topics stamp records with the broker's append time."""
        self.alter_topics(topics, {"message.timestamp.type": "LogAppendTime"})

    def alter_topics(self, topics: Sequence[str], configs: dict[str, str]) -> None:
        """Set these configs on these topics (incrementally: others stay)."""
        admin = AdminClient(client_config(self.bootstrap))
        resources = [
            ConfigResource(
                ConfigResource.Type.TOPIC,
                topic,
                incremental_configs=[
                    ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
                    for name, value in configs.items()
                ],
            )
            for topic in topics
        ]
        for future in admin.incremental_alter_configs(resources).values():
            future.result(30)

    def delete_topics(self) -> None:
        """Drop every topic whose name holds this deployment's name (changelogs too)."""
        admin = AdminClient(client_config(self.bootstrap, log_level=3))
        mine = [n for n in admin.list_topics(timeout=30).topics if self.name in n]
        if mine:
            for future in admin.delete_topics(mine, operation_timeout=60).values():
                try:
                    future.result(60)
                except Exception as exc:
                    print(f"could not delete a topic: {exc}", file=sys.stderr)
