"""Kafka Connect's stock JsonConverter reads the json_schema output as typed records.

A worker and the routing sink write lead-state and assignments with
LEADSCORE_OUTPUT_FORMAT=json_schema; Apache Kafka Connect (standalone) reads
both topics with JsonConverter (schemas.enable=true) and the stock
FileStreamSink, which writes each record's Connect Struct. With
errors.tolerance=none a record the converter cannot read stops the task.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import yaml

from tests.integration.test_pipeline import ev
from tests.support.deployments import Deployment
from tests.support.http import free_port
from tests.support.records import consume, produce

ROOT = Path(__file__).parents[2]
KAFKA_LOCAL = ROOT / "deploy" / "kafka-local" / "kafka-local"


def properties(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return path


def test_lead_state_and_assignments_convert_to_connect_structs(
    deployment: Deployment, start_worker, tmp_path: Path
) -> None:
    deployment.extra["LEADSCORE_OUTPUT_FORMAT"] = "json_schema"
    start_worker()
    routing = tmp_path / "routing.yaml"
    routing.write_text(
        yaml.safe_dump(
            {
                "actions": ["threshold_crossed:mql"],
                "teams": [{"name": "sales", "members": [{"id": "rep-1"}], "overflow_queue": "q"}],
                "rules": [{"team": "sales"}],
            }
        )
    )
    sink = deployment.routing_sink(routing).start()
    at = int(time.time() * 1000)
    contacts = [f"lead-{i}" for i in range(5)]
    produce(
        deployment.bootstrap,
        deployment.topic("events"),
        [
            ev(f"{c}-{n}", c, kind, at + n, account_id="acme" if i % 2 else None)
            for i, c in enumerate(contacts)
            for n, kind in enumerate(["signup", "demo_request", "download"])
        ],
    )
    consume(deployment.bootstrap, deployment.topic("assignments"), len(contacts))
    sink.stop()

    out = tmp_path / "connect-out.txt"
    worker = properties(
        tmp_path / "worker.properties",
        {
            "bootstrap.servers": deployment.bootstrap,
            "key.converter": "org.apache.kafka.connect.storage.StringConverter",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "offset.storage.file.filename": str(tmp_path / "connect.offsets"),
            "listeners": f"http://127.0.0.1:{free_port()}",
            "plugin.discovery": "only_scan",
        },
    )
    connector = properties(
        tmp_path / "file-sink.properties",
        {
            "name": f"check-{deployment.name}",
            "connector.class": "org.apache.kafka.connect.file.FileStreamSinkConnector",
            "tasks.max": "1",
            "topics": f"{deployment.topic('lead-state')},{deployment.topic('assignments')}",
            "file": str(out),
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter.schemas.enable": "true",
            "errors.tolerance": "none",
            "consumer.override.auto.offset.reset": "earliest",
        },
    )
    log = tmp_path / "connect.log"
    with log.open("wb") as sink_log:
        connect = subprocess.Popen(
            [str(KAFKA_LOCAL), "connect-standalone", str(worker), str(connector)],
            stdout=sink_log,
            stderr=subprocess.STDOUT,
        )
    expected = 3 * len(contacts) + len(contacts)  # a lead state per event, an assignment per lead
    try:
        deadline = time.monotonic() + 180
        lines: list[str] = []
        while time.monotonic() < deadline:
            lines = out.read_text().splitlines() if out.exists() else []
            if len(lines) >= expected:
                break
            assert connect.poll() is None, log.read_text()[-3000:]
            assert "Task threw an uncaught and unrecoverable exception" not in log.read_text()
            time.sleep(0.5)
    finally:
        connect.terminate()
        connect.wait(60)
    assert len(lines) == expected, log.read_text()[-3000:]
    states = [line for line in lines if "current_score=" in line]
    assignments = [line for line in lines if "assignment_id=" in line]
    assert len(states) == 3 * len(contacts)
    assert len(assignments) == len(contacts)
    for line in states + assignments:
        assert line.startswith("Struct{"), line
    # Typed values: a double score, a Timestamp rendered as a date, the optional account.
    assert any(re.search(r"score=60\.0\b", line) for line in states)
    assert any(
        "last_event_at=" in line and re.search(r"last_event_at=\w{3} \w{3} ", line)
        for line in states
    )
    assert {re.search(r"owner=([\w-]+)", line).group(1) for line in assignments} == {"rep-1"}
    assert any("account_id=acme" in line for line in assignments)
