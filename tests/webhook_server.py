"""A real local HTTP server for the sinks' tests: it answers, fails, throttles, stalls or goes away.

It runs aiohttp in a thread of the test process. Each path has a behaviour
(set with ``behave``); every request is recorded with its headers, body, the
time it arrived and the status it got.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Behaviour:
    """How a path answers. Failures before success are counted per Idempotency-Key."""

    status: int = 200  # the answer once the failures below are used up
    fail_first: int = 0  # answer the first N requests of a key with fail_status
    fail_status: int = 500
    retry_after: str | None = None  # Retry-After header on failures
    stall_first: int = 0  # make the first N requests of a key wait `stall` seconds
    stall: float = 0.0
    delay: float = 0.0  # every request takes this long (a slow but healthy endpoint)
    location: str | None = None  # with a 3xx status: where it redirects to
    body_bytes: int = 0  # answer with a body this large, streamed in 1 MiB chunks


@dataclass
class Received:
    path: str
    key: str | None
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() on arrival
    status: int  # 0 until the answer was written (stalled or client gone: stays 0)
    answered_at: float = 0.0


@dataclass
class WebhookServer:
    port: int
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    _seen: Counter[tuple[str, str | None]] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def behave(self, path: str, behaviour: Behaviour) -> None:
        self.behaviours[path] = behaviour

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        key = request.headers.get("Idempotency-Key")
        b = self.behaviours.get(request.path, Behaviour(status=404))
        with self._lock:
            self._seen[(request.path, key)] += 1
            nth = self._seen[(request.path, key)]
        entry = Received(request.path, key, dict(request.headers), body, time.time(), 0)
        if nth <= b.stall_first:
            await asyncio.sleep(b.stall)
        if b.delay:
            await asyncio.sleep(b.delay)
        status = b.fail_status if nth <= b.fail_first else b.status
        headers = {"Retry-After": b.retry_after} if b.retry_after and status != 200 else {}
        if b.location:
            headers["Location"] = b.location
        with self._lock:
            self.received.append(entry)
        if b.body_bytes:
            stream = web.StreamResponse(status=status, headers=headers)
            stream.content_length = b.body_bytes
            await stream.prepare(request)
            chunk = b"x" * 1_048_576
            try:
                for sent in range(0, b.body_bytes, len(chunk)):
                    await stream.write(chunk[: b.body_bytes - sent])
                await stream.write_eof()
            except (ConnectionResetError, RuntimeError):
                entry.status = -1  # the client stopped reading: it did not take the body
                return stream
            entry.status = status
            entry.answered_at = time.time()
            return stream
        response = web.Response(
            status=status, text="ok" if status == 200 else "no", headers=headers
        )
        await response.prepare(request)
        await response.write_eof()
        # Only an answer the client could read counts. A stalled request outlasted the
        # client's timeout; a write to a client that went away raised above.
        if nth > b.stall_first:
            entry.status = status
        entry.answered_at = time.time()
        return response

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> WebhookServer:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def serve() -> None:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
            ready.set()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(serve())
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("webhook server did not start")
        return self

    def stop(self) -> None:
        """Go away: close the port (connections are refused until start() again)."""
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    # -- what arrived ------------------------------------------------------------------------

    def accepted(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path and r.status == 200]

    def attempts(self, path: str) -> dict[str | None, list[Received]]:
        by_key: dict[str | None, list[Received]] = defaultdict(list)
        with self._lock:
            for r in self.received:
                if r.path == path:
                    by_key[r.key].append(r)
        return by_key

    def wait_accepted(self, path: str, count: int, timeout: float = 60.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.accepted(path)
            if len({r.key for r in got}) >= count:
                return got
            time.sleep(0.1)
        got = self.accepted(path)
        raise AssertionError(f"{path}: {len({r.key for r in got})} of {count} keys accepted")


def summary(received: list[Received]) -> dict[str, Any]:
    keys = Counter(r.key for r in received)
    return {
        "requests": len(received),
        "keys": len(keys),
        "repeated": sum(n - 1 for n in keys.values()),
    }
