"""docs/api.md's curl examples, run against a worker fed the example events."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.contract import check
from tests.support.deployments import Deployment
from tests.support.http import free_port, get, wait_ready

ROOT = Path(__file__).parents[2]
VOLATILE = {"processed_at"}  # wall-clock time of processing: differs on every run


def section() -> str:
    return (ROOT / "docs" / "api.md").read_text()


def examples() -> list[tuple[str, Any]]:
    """(command, parsed answer) of every ``$ curl`` in the section's console block."""
    block = re.search(r"```console\n(.*?)```", section(), re.S)
    assert block, "docs/api.md has a console block"
    parts = re.split(r"^\$ (.*)$", block.group(1), flags=re.M)[1:]
    pairs = [(parts[i], json.loads(parts[i + 1])) for i in range(0, len(parts), 2)]
    assert len(pairs) >= 4
    return pairs


def without_volatile(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_volatile(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [without_volatile(v) for v in value]
    return value


def events_handled(port: int) -> float:
    text = get(port, "/metrics").body
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("leadscore_events_total{")
    )


def test_the_curl_examples_of_the_api_docs_answer_what_they_show(
    deployment: Deployment, start_worker
) -> None:
    setup = re.search(r"```sh\n(LEADSCORE_RULES_FILE=.*?)```", section(), re.S)
    assert setup, "the section shows how to start the worker and load the events"
    worker_line, produce_line = setup.group(1).strip().splitlines()
    assert worker_line.startswith("LEADSCORE_RULES_FILE=examples/rules.yaml ")
    assert worker_line.endswith("leadscore worker &")
    assert produce_line.endswith("leadscore produce examples/events.jsonl")

    port = free_port()
    deployment.extra.update(
        LEADSCORE_WEB_ENABLED="true", LEADSCORE_RULES_FILE=str(ROOT / "examples/rules.yaml")
    )
    start_worker(LEADSCORE_WEB_PORT=str(port))
    wait_ready(port)
    subprocess.run(
        [sys.executable, "-m", "leadscore.cli", "produce", "examples/events.jsonl"],
        cwd=ROOT,
        env={**os.environ, **deployment.env},
        check=True,
        capture_output=True,
    )
    lines = len((ROOT / "examples/events.jsonl").read_text().splitlines())
    deadline = time.monotonic() + 60
    while events_handled(port) < lines:  # scored, duplicate or dead-lettered: each line once
        assert time.monotonic() < deadline, f"{events_handled(port)} of {lines} handled"
        time.sleep(0.2)

    for command, shown in examples():
        args = shlex.split(command.replace("localhost:6066", f"127.0.0.1:{port}"))
        assert args[:2] == ["curl", "-s"], command
        out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=30).stdout
        answer = json.loads(out)
        assert without_volatile(answer) == without_volatile(shown), command
        if "error" not in answer:
            schema = "History" if "/history" in command else "LeadState"
            schema = "AccountState" if "/accounts/" in command else schema
            check(answer, "Intelligence" if "/intelligence" in command else schema)
