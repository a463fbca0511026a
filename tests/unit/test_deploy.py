"""The deploy files agree with each other: compose, Prometheus targets, Grafana provisioning."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def compose_config(*profiles: str) -> dict[str, Any]:
    """docker-compose.yml as docker-compose resolves it (Debian's docker-compose 1.29)."""
    binary = shutil.which("docker-compose")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose not found: .ci/run installs Debian's docker-compose")
        pytest.skip("docker-compose not installed (apt-get install docker-compose)")
    args = [binary, "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml")]
    for profile in profiles:
        args += ["--profile", profile]
    # The worker and Prometheus need the API token: compose refuses to start without one.
    env = {**os.environ, "LEADSCORE_API_TOKEN": "compose-test-token"}
    result = subprocess.run(
        [*args, "config"], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def test_compose_refuses_to_start_the_worker_without_an_api_token() -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose not found: .ci/run installs Debian's docker-compose")
        pytest.skip("docker-compose not installed (apt-get install docker-compose)")
    env = {k: v for k, v in os.environ.items() if k != "LEADSCORE_API_TOKEN"}
    compose = [binary, "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml")]
    result = subprocess.run(
        [*compose, "config"], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env
    )
    assert result.returncode != 0
    assert "set LEADSCORE_API_TOKEN" in result.stderr


def test_the_worker_api_is_published_on_loopback_only_with_a_token() -> None:
    worker = compose_config()["services"]["worker"]
    assert worker["environment"]["LEADSCORE_API_TOKEN"] == "compose-test-token"
    published = json.dumps(worker["ports"])
    assert "127.0.0.1" in published


def test_compose_file_is_valid_and_starts_in_dependency_order() -> None:
    services = compose_config("sinks", "simulate")["services"]
    assert set(services) >= {"kafka", "topics", "worker", "routing", "notify", "prometheus",
                             "grafana", "simulator"}  # fmt: skip
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services["worker"]["depends_on"]["topics"]["condition"] == (
        "service_completed_successfully"
    )
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    for name in ("kafka", "worker", "prometheus"):
        assert "healthcheck" in services[name], name
    # The broker image is the Kafka version the local broker and the tests use.
    pom = (DEPLOY / "kafka-local" / "pom.xml").read_text()
    version = re.search(r"<kafka.version>(.+?)</kafka.version>", pom)
    assert version is not None
    assert services["kafka"]["image"] == f"apache/kafka:{version.group(1)}"


def test_prometheus_scrapes_the_compose_services_on_their_ports() -> None:
    services = compose_config("sinks")["services"]
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = [
        t
        for job in prometheus["scrape_configs"]
        for c in job["static_configs"]
        for t in c["targets"]
    ]
    worker_port = services["worker"]["environment"].get("LEADSCORE_WEB_PORT", "6066")
    sink_port = "9109"  # LEADSCORE_SINK_METRICS_PORT's default
    expected = {f"worker:{worker_port}", f"routing:{sink_port}", f"notify:{sink_port}"}
    assert set(targets) == expected
    mounts = [  # compose 1.29 prints "source:target:mode", compose 2 a mapping
        (m["source"], m["target"]) if isinstance(m, dict) else tuple(m.split(":")[:2])
        for m in services["prometheus"]["volumes"]
    ]
    assert (str(DEPLOY / "prometheus"), "/etc/prometheus") in mounts, mounts


def test_grafana_dashboards_use_the_provisioned_datasource_and_are_built() -> None:
    datasources = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    uids = {d["uid"] for d in datasources}
    boards = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
    assert [b.name for b in boards] == [
        "accounts.json",
        "executive.json",
        "oncall.json",
        "sinks.json",
    ]
    for path in boards:
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] in uids, (path.name, panel["title"])
            assert panel["targets"], (path.name, panel["title"])
    build = subprocess.run(
        [sys.executable, str(DEPLOY / "grafana" / "build.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
