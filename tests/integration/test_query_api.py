"""The lead query API with two workers in one group: any worker answers for any lead."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from typing import Any

from aiokafka.partitioner import DefaultPartitioner

from tests.integration.kafka import consume, produce
from tests.integration.test_pipeline import ev, values
from tests.integration.workers import Deployment

TOKEN = "test-token-1"
partitioner = DefaultPartitioner()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(port: int, path: str, token: str | None = TOKEN) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_ready(port: int, timeout: float = 60.0) -> list[int]:
    """Wait for /readyz to say ready; the events partitions the worker owns."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = get(port, "/readyz", token=None)
        if status == 200:
            return list(body["partitions"])
        time.sleep(0.5)
    raise AssertionError(f"worker on port {port} not ready within {timeout} s")


def test_every_lead_is_answered_through_either_worker(
    deployment: Deployment, start_worker, tmp_path
) -> None:
    deployment.extra.update(LEADSCORE_WEB_ENABLED="true", LEADSCORE_API_TOKEN=TOKEN)
    ports = [free_port(), free_port()]
    for i, port in enumerate(ports):
        start_worker(LEADSCORE_WEB_PORT=str(port), LEADSCORE_DATA_DIR=str(tmp_path / f"s{i}"))
    at = int(time.time() * 1000)
    contacts = [f"lead-{i}" for i in range(24)]
    produce(
        deployment.bootstrap,
        deployment.topic("events"),
        [ev(f"{c}-1", c, "signup", at) for c in contacts]
        + [ev(f"{c}-2", c, "demo_request", at) for c in contacts[:12]],
    )
    consume(deployment.bootstrap, deployment.topic("lead-state"), 36)
    owned = [wait_ready(port) for port in ports]
    assert sorted(owned[0] + owned[1]) == [0, 1, 2]
    assert owned[0]
    assert owned[1]
    # The partition a contact's events (and so its state) live in: murmur2, as Faust routes.
    owner = {
        c: 0 if partitioner(c.encode(), [0, 1, 2], [0, 1, 2]) in owned[0] else 1 for c in contacts
    }
    assert set(owner.values()) == {0, 1}, "each worker owns some of the leads"

    # Every lead through both workers: for each, one of the two answers is forwarded.
    for contact in contacts:
        answers = [get(port, f"/leads/{contact}") for port in ports]
        for status, body in answers:
            assert status == 200, body
            assert body["contact_id"] == contact
            assert body["score"] == (50.0 if contact in contacts[:12] else 20.0)
            assert body["stage"] == ("hot" if contact in contacts[:12] else "warm")
        status, intel = get(ports[1], f"/leads/{contact}/intelligence")
        assert status == 200
        assert intel["reasons"][0]["rule_id"] in ("signup", "demo-request")

    for port in ports:
        assert get(port, "/leads/nobody") == (
            404,
            {"error": {"code": "not_found", "message": "no lead with this contact id"}},
        )
        status, body = get(port, "/leads/lead-1", token=None)
        assert (status, body["error"]["code"]) == (401, "unauthorized")
        status, body = get(port, "/leads/a%07b")
        assert (status, body["error"]["code"]) == (400, "invalid_contact_id")
        assert get(port, "/healthz", token=None) == (200, {"status": "alive"})
    states = values(consume(deployment.bootstrap, deployment.topic("lead-state"), 36))
    assert {s["contact_id"] for s in states} == set(contacts)
