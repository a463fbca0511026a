"""The shipped Prometheus config, rules and Grafana dashboards against a real Prometheus.

One stack for the module: the real broker, a worker (query API and /metrics on), the
routing and notification sinks (their own metrics ports; one webhook answers 200,
one 422 so the sink dead-letters), simulated traffic with a few unreadable records,
and Debian's ``prometheus`` scraping all three every second with the shipped rules.
Then every PromQL expression of every dashboard and rule is executed through the
HTTP API and must return data: a metric renamed or removed in the code fails here.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.deployments import Deployment
from tests.support.http import free_port, get, wait_ready, wait_until
from tests.support.processes import Process
from tests.support.prometheus import start_prometheus
from tests.support.records import produce
from tests.webhook_server import Behaviour, WebhookServer

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
RULE_FILES = [PROMETHEUS_DIR / "rules" / "recording.yml", PROMETHEUS_DIR / "rules" / "alerts.yml"]
# Grafana's $__rate_interval is at least 4 scrape intervals; here the window spans the run.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "15s", "$__range": "1h"}
BAD_RECORDS = 12


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: install Debian's prometheus package (.ci/run does)")
    return path


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), *map(str, args)], capture_output=True, text=True, timeout=120
    )


def rule_count(path: Path) -> int:
    """Recording rules and alerts in one rule file."""
    return sum(len(group["rules"]) for group in yaml.safe_load(path.read_text())["groups"])


def test_promtool_accepts_the_shipped_config_and_rules(tmp_path: Path) -> None:
    # promtool checks that the token file exists: the shipped config reads it where
    # docker-compose.yml's Prometheus entrypoint writes it; here it points at a copy.
    shipped = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    (worker_job,) = [j for j in shipped["scrape_configs"] if j["job_name"] == "leadscore-worker"]
    assert worker_job["authorization"]["credentials_file"] == "/prometheus/leadscore-api-token"
    assert "/prometheus/leadscore-api-token" in (ROOT / "docker-compose.yml").read_text()
    (tmp_path / "token").write_text(API_TOKEN)
    worker_job["authorization"]["credentials_file"] = str(tmp_path / "token")
    shipped["rule_files"] = [str(PROMETHEUS_DIR / f) for f in shipped["rule_files"]]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(shipped))
    config = promtool("check", "config", tmp_path / "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr
    rules = promtool("check", "rules", *RULE_FILES)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    for path in RULE_FILES:
        assert f"SUCCESS: {rule_count(path)} rules found" in rules.stdout, path.name


def test_every_alert_fires_and_resolves_in_the_rule_unit_tests() -> None:
    result = promtool("test", "rules", PROMETHEUS_DIR / "tests" / "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(
        re.findall(r"alertname: (\w+)", (PROMETHEUS_DIR / "tests" / "alerts_test.yml").read_text())
    )
    assert tested == set(alert_names()), "each alert needs fire and resolve tests"


def rule_groups() -> list[dict[str, Any]]:
    return [g for path in RULE_FILES for g in yaml.safe_load(path.read_text())["groups"]]


def alert_names() -> list[str]:
    return [r["alert"] for g in rule_groups() for r in g["rules"] if "alert" in r]


def test_every_alert_has_a_runbook_section() -> None:
    runbooks = (ROOT / "docs" / "runbooks.md").read_text()
    anchors = {h.strip().lower() for h in re.findall(r"^## (\w+)$", runbooks, re.M)}
    for group in rule_groups():
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            link = rule["annotations"]["runbook_url"]
            path, _, anchor = link.partition("#")
            assert path == "docs/runbooks.md", link
            assert anchor in anchors, f"{rule['alert']}: no section #{anchor} in docs/runbooks.md"


# -- the running stack -------------------------------------------------------------------------


@dataclass
class Stack:
    prometheus: str  # base URL
    worker_port: int
    scraped: set[str]  # metric names Prometheus has

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as response:
            answer = json.load(response)
        assert answer["status"] == "success", f"{expr}: {answer}"
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.prometheus}{path}", timeout=10) as response:
            return json.load(response)["data"]


API_TOKEN = "prometheus-test-token"


def prometheus_config(tmp: Path, worker: int, sinks: list[int]) -> Path:
    """The shipped prometheus.yml with local targets, 1 s intervals and absolute rule paths."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROMETHEUS_DIR / f) for f in config["rule_files"]]
    targets = {
        "leadscore-worker": [f"127.0.0.1:{worker}"],
        "leadscore-sink": [f"127.0.0.1:{port}" for port in sinks],
    }
    assert {job["job_name"] for job in config["scrape_configs"]} == set(targets)
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": targets[job["job_name"]]}]
        if "authorization" in job:  # the worker's token, where the shipped file reads it
            token_file = tmp / "leadscore-api-token"
            token_file.write_text(API_TOKEN)
            job["authorization"]["credentials_file"] = str(token_file)
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def stack(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("prometheus")
    deployment = Deployment(kafka, tmp)
    deployment.create_topics()
    server = WebhookServer(free_port()).start()
    server.behave("/hook", Behaviour())
    server.behave("/broken", Behaviour(status=422))
    notify_config = tmp / "notify.yaml"
    notify_config.write_text(
        yaml.safe_dump(
            {
                "endpoints": [
                    {"name": "crm", "kind": "webhook", "url": f"http://127.0.0.1:{server.port}/hook",
                     "secret_env": "TEST_WEBHOOK_SECRET", "actions": ["*"]},
                    {"name": "broken", "kind": "webhook",
                     "url": f"http://127.0.0.1:{server.port}/broken",
                     "secret_env": "TEST_WEBHOOK_SECRET", "actions": ["threshold_crossed:*"]},
                ]
            }
        )
    )  # fmt: skip
    ports = {"worker": free_port(), "notify": free_port(), "routing": free_port()}
    processes: list[Process] = []
    simulator: subprocess.Popen[bytes] | None = None
    try:
        worker = deployment.worker(
            LEADSCORE_WEB_ENABLED="true",
            LEADSCORE_WEB_PORT=str(ports["worker"]),
            LEADSCORE_TIMER_INTERVAL_SECONDS="1",
            LEADSCORE_API_TOKEN=API_TOKEN,
        ).start()
        processes.append(worker)
        wait_ready(ports["worker"], partitions=deployment.partitions)
        processes.append(
            deployment.notify_sink(
                notify_config,
                TEST_WEBHOOK_SECRET="s3cret",
                LEADSCORE_SINK_METRICS_PORT=str(ports["notify"]),
            ).start()
        )
        processes.append(
            deployment.routing_sink(
                ROOT / "examples" / "routing.yaml",
                LEADSCORE_SINK_METRICS_PORT=str(ports["routing"]),
            ).start()
        )
        sink_ports = [ports["notify"], ports["routing"]]
        config = prometheus_config(tmp, ports["worker"], sink_ports)
        prometheus, base = start_prometheus(tool("prometheus"), config, tmp)
        processes.append(prometheus)
        stack = Stack(base, ports["worker"], set())

        def all_scraped() -> bool:
            up = stack.query("up")
            return len(up) == 3 and all(s["value"][1] == "1" for s in up)

        # Scraping starts a few seconds after ready; traffic starts once all are scraped.
        wait_until(all_scraped, "all three targets up")
        # Traffic all along the checks: rates stay non-zero and new crossings keep coming.
        simulator = subprocess.Popen(
            [sys.executable, "-m", "leadscore.cli", "simulate", "--contacts", "300",
             "--rate", "80", "--duration", "0", "--quiet"],
            env={**os.environ, **deployment.env},
            stdout=(tmp / "simulate.log").open("wb"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        produce(
            kafka,
            deployment.topic("events"),
            [(f"bad-{i}".encode(), b"{not json") for i in range(BAD_RECORDS)],
        )
        # Wait for the slowest signals: a threshold crossed, routed, delivered and refused.
        for expr in [
            "increase(leadscore_time_to_threshold_seconds_count[5m]) > 0",
            "increase(leadscore_account_actions_total[5m]) > 0",
            'increase(leadscore_sink_dead_letters_total{sink="notify"}[5m]) > 0',
            'increase(leadscore_sink_action_to_delivery_seconds_count{sink="routing"}[5m]) > 0',
            f'leadscore_dead_letters_total{{reason="bad_json"}} >= {BAD_RECORDS}',
        ]:
            wait_until(lambda e=expr: stack.query(e), expr, timeout=120)
        time.sleep(3)  # a few more scrapes and rule evaluations after the first crossings
        stack.scraped = set(stack.api("/api/v1/label/__name__/values"))
        yield stack
    finally:
        if simulator is not None:
            simulator.send_signal(signal.SIGINT)
            simulator.wait(30)
        for process in processes:
            process.stop()
        server.stop()


def finite(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(sample["value"][1])) for sample in result)


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel, expression) of every target, Grafana variables substituted."""
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel["targets"]:
                expr = target["expr"]
                for name, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(name, value)
                assert "$" not in expr, f"unknown Grafana variable in {expr}"
                found.append((path.stem, panel["title"], expr))
    return found


def test_every_dashboard_query_returns_data(stack: Stack) -> None:
    queries = dashboard_queries()
    assert len(queries) >= 40
    empty = [(d, p, e, stack.query(e)) for d, p, e in queries if not finite(stack.query(e))]
    assert not empty, "panels without data:\n" + "\n".join(
        f"{d}: {p}: {e} gave {r}" for d, p, e, r in empty
    )
    print(f"{len(queries)} dashboard queries, each returned data")


def operands(expr: str) -> list[str]:
    """The operands of an alert's comparisons: ``a > 1 and b > 0`` gives ``[a, b]``."""
    parts, depth, start = [], 0, 0
    tokens = re.compile(r"\s(and|or|unless)\s|\s(==|!=|>=|<=|>|<)\s")
    pieces: list[tuple[str, str]] = []  # (text, the operator that ended it)
    i = 0
    while i < len(expr):
        char = expr[i]
        depth += char in "([{"
        depth -= char in ")]}"
        match = tokens.match(expr, i) if depth == 0 else None
        if match:
            pieces.append((expr[start:i], match.group(1) or match.group(2)))
            i = start = match.end()
            continue
        i += 1
    pieces.append((expr[start:], ""))
    # A piece ended by a comparison is an operand; the piece after it is the threshold.
    for text, ended_by in pieces:
        if ended_by in ("==", "!=", ">=", "<=", ">", "<"):
            parts.append(text.strip())
    return parts


def test_operands_of_comparisons_are_found() -> None:
    assert operands("a > 1") == ["a"]
    assert operands("x:y > 1000 and deriv(x:y[10m]) > 0") == ["x:y", "deriv(x:y[10m])"]
    assert operands('max by (a) (m{b="c > d"}) == 2') == ['max by (a) (m{b="c > d"})']


def test_every_rule_expression_returns_data(stack: Stack) -> None:
    checked = 0
    for group in rule_groups():
        for rule in group["rules"]:
            expr = " ".join(rule["expr"].split())
            stack.query(expr)  # the whole expression evaluates (empty when not alerting)
            if "record" in rule:
                # The rule's own output, as Prometheus recorded it: every SLI has a value.
                recorded = stack.query(rule["record"])
                assert finite(recorded), f"{rule['record']} recorded no finite value: {recorded}"
                checked += 1
            else:
                for operand in operands(expr):
                    assert stack.query(operand), f"{rule['alert']}: {operand} returned nothing"
                    checked += 1
    assert checked >= 20
    print(f"{checked} rule expressions and alert operands, each returned data")


def test_prometheus_evaluates_every_loaded_rule_without_error(stack: Stack) -> None:
    loaded = [r for g in stack.api("/api/v1/rules")["groups"] for r in g["rules"]]
    assert len(loaded) == sum(rule_count(path) for path in RULE_FILES)
    assert [
        (r["name"], r["health"], r.get("lastError")) for r in loaded if r["health"] != "ok"
    ] == []
    firing = [r["name"] for r in loaded if r["type"] == "alerting" and r["state"] == "firing"]
    # The 422 endpoint makes the notify sink dead-letter: that alert is meant to fire here.
    assert "LeadscoreSinkDeadLetters" in firing
    assert {"LeadscoreWorkerDown", "LeadscoreWorkerNotReady", "LeadscoreNoEvents"}.isdisjoint(
        firing
    )


def test_the_documented_metrics_table_lists_every_exported_metric(stack: Stack) -> None:
    operations = (ROOT / "docs" / "operations.md").read_text()
    documented = set(re.findall(r"^\| `(leadscore_\w+)`", operations, re.M))
    exported = set()
    for name in stack.scraped:
        if not name.startswith("leadscore_"):
            continue
        exported.add(re.sub(r"_(bucket|count|sum)$", "", name))
    assert exported == documented, (
        f"exported, not in docs/operations.md: {sorted(exported - documented)}; "
        f"in docs/operations.md, not exported: {sorted(documented - exported)}"
    )


def test_the_worker_metrics_agree_with_the_query_api(stack: Stack) -> None:
    leads = stack.query("sum(leadscore_leads)")
    ready = get(stack.worker_port, "/readyz")
    assert ready.status == 200
    assert float(leads[0]["value"][1]) > 0
    assert stack.query("leadscore_assigned_partitions")[0]["value"][1] == str(
        len(ready.body["partitions"])
    )
