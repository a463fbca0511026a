"""One endpoint client against a real local HTTP server: outages, redirects, bodies.

No broker: EndpointClient.deliver is called directly, as the notify sink calls it.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import aiohttp
import pytest

from leadscore.sinks.delivery import EndpointClient, Outcome
from leadscore.sinks.notify_config import Endpoint, EndpointSpec
from tests.support.http import free_port
from tests.webhook_server import Behaviour, WebhookServer

ACTION: dict[str, Any] = {
    "action_id": "act-1",
    "contact_id": "ada",
    "account_id": None,
    "kind": "threshold_crossed",
    "name": "mql",
    "score": 61.0,
    "previous_score": 55.0,
    "stage": "qualified",
    "previous_stage": "hot",
    "occurred_at": 1,
    "emitted_at": 1,
    "cause_event_id": "e1",
    "reasons": [],
    "rules_version": "v",
    "fit": 0.0,
    "grade": None,
    "fit_reasons": [],
}


def deliver(url: str, **spec: Any) -> Outcome:
    endpoint = Endpoint(EndpointSpec(name="hook", kind="slack", url=url, **spec), url, None)

    async def run() -> Outcome:
        async with aiohttp.ClientSession() as session:
            return await EndpointClient(endpoint, session, None).deliver(ACTION)

    return asyncio.run(run())


FAST = {"backoff_initial_seconds": 0.01, "backoff_max_seconds": 0.05}


def test_an_outage_longer_than_the_attempt_budget_ends_in_delivery() -> None:
    """Issue 19: refused tries on an open breaker counted as attempts, so an outage of
    about a minute dead-lettered every action."""
    server = WebhookServer(free_port())
    server.behave("/hook", Behaviour())
    url = f"http://127.0.0.1:{server.port}/hook"
    threading.Timer(2.0, server.start).start()  # down for 2 s, then up on the same port
    try:
        outcome = deliver(
            url, max_attempts=2, breaker_failures=1, breaker_cooldown_seconds=0.2, **FAST
        )
    finally:
        server.stop()
    assert outcome.delivered, outcome
    assert outcome.attempts > 2, "half-open trials were made and did not spend attempts"
    assert len(server.accepted("/hook")) == 1


def test_a_delivery_gives_up_after_max_outage_seconds() -> None:
    port = free_port()  # nothing listens
    outcome = deliver(
        f"http://127.0.0.1:{port}/hook",
        max_attempts=100,
        breaker_failures=1,
        breaker_cooldown_seconds=0.2,
        max_outage_seconds=1.0,
        **FAST,
    )
    assert not outcome.delivered
    assert outcome.error is not None
    assert "unavailable for 1 s" in outcome.error or "max_outage_seconds" in outcome.error
    assert "/hook" not in outcome.error, "no URL path in an error"


@pytest.mark.parametrize(("status", "followed"), [(307, True), (308, True), (302, False)])
def test_same_origin_redirects_are_followed_only_when_allowed(status: int, followed: bool) -> None:
    server = WebhookServer(free_port()).start()
    thief = WebhookServer(free_port()).start()
    server.behave("/old", Behaviour(status=status, location="/new"))
    server.behave("/new", Behaviour())
    server.behave("/away", Behaviour(status=307, location=f"http://127.0.0.1:{thief.port}/x"))
    thief.behave("/x", Behaviour())
    try:
        base = f"http://127.0.0.1:{server.port}"
        refused = deliver(f"{base}/old", **FAST)
        allowed = deliver(f"{base}/old", redirects="same_origin", **FAST)
        elsewhere = deliver(f"{base}/away", redirects="same_origin", **FAST)
    finally:
        server.stop()
        thief.stop()
    assert not refused.delivered
    assert refused.error == f"HTTP {status}: redirect not followed (redirects: refuse)"
    assert allowed.delivered == followed
    assert not elsewhere.delivered, "another origin is never followed"
    assert thief.received == []
