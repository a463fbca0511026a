"""Requests to a worker's HTTP API, and waiting for something to become true."""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tests.support.deadlines import EVENTUALLY_S, HTTP_READY_S

T = TypeVar("T")


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(
    port: int,
    path: str,
    token: str | None = None,
    method: str = "GET",
    extra_headers: dict[str, str] | None = None,
) -> Answer:
    """One request; HTTP errors are answers too (connection errors raise URLError)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method, headers=extra_headers or {}
    )
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


def wait_until(
    check: Callable[[], T | None],
    what: str,
    timeout: float = EVENTUALLY_S,
    alive: Callable[[], None] | None = None,
    pause: float = 0.2,
) -> T:
    """Call ``check`` until it returns something true (which is returned).

    A connection error (nothing listening yet) counts as not yet; ``alive`` may raise when
    what should make it true has died. Fails with ``what`` and the last answer.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        if alive is not None:
            alive()
        try:
            result = check()
        except (OSError, http.client.HTTPException) as error:  # not answering (yet)
            last = error
        else:
            if result:
                return result
            last = result
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {timeout:.0f} s; last: {last!r:.2000}")
        time.sleep(pause)


def wait_http(url: str, timeout: float, alive: Callable[[], None] | None = None) -> None:
    """Until ``url`` answers 200."""

    def ok() -> bool:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(answer.status == 200)

    wait_until(ok, f"200 from {url}", timeout, alive)


def wait_ready(
    port: int, partitions: int | None = None, timeout: float = HTTP_READY_S
) -> list[int]:
    """Until /readyz answers 200 (with that many owned partitions, if given); those partitions."""

    def ready() -> Answer | None:
        answer = get(port, "/readyz")
        if answer.status == 200 and partitions in (None, len(answer.body["partitions"])):
            return answer
        return None

    return list(wait_until(ready, f"ready on port {port}", timeout).body["partitions"])
