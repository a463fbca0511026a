"""A small HTTP client for the workers' query API, and waiting for readiness."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(port: int, path: str, token: str | None = None, method: str = "GET") -> Answer:
    """One request; HTTP errors are answers too (connection errors raise URLError)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw, status, headers = response.read(), response.status, response.headers
    except urllib.error.HTTPError as error:
        raw, status, headers = error.read(), error.code, error.headers
    is_json = headers.get_content_type() == "application/json"
    body = json.loads(raw) if is_json else raw.decode()
    return Answer(status, body, dict(headers.items()))


def wait_ready(port: int, partitions: int | None = None, timeout: float = 90.0) -> list[int]:
    """Wait for /readyz (and, if given, that many owned partitions); the partitions owned."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            answer = get(port, "/readyz")
        except urllib.error.URLError as error:
            last = error
        else:
            last = answer.body
            if answer.status == 200 and partitions in (None, len(answer.body["partitions"])):
                return list(answer.body["partitions"])
        time.sleep(0.2)
    raise AssertionError(f"worker on port {port} not ready within {timeout} s: {last}")
