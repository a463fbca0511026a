"""``leadscore sink notify``: deliver actions to Slack and signed JSON webhooks.

The sink runner (runner.py) consumes leadscore.actions in the group
``<app id>-notify`` (and leadscore.account-actions when an endpoint names
account actions: ``account_*`` patterns). Each action goes to every endpoint
that wants its ``kind:name``, concurrently, each endpoint with its own rate
limit, concurrency and circuit breaker, so a dead endpoint does not hold up the
others.

Nothing is lost: an action is done when each of its deliveries succeeded or was
written to the sink dead-letter topic (acknowledged by the broker), and the
runner commits a partition only up to its first action not yet done. Nothing is
doubled by the sink: each successful delivery is recorded in a ledger on disk,
checked before delivering, so an action consumed again after a crash or restart
is not sent again. The one window: a crash after an endpoint accepted a
delivery and before the ledger recorded it sends it again on restart, with the
same ``Idempotency-Key`` (the action id), which the receiver can use to drop
it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from confluent_kafka import Message

from leadscore.config import Settings
from leadscore.logs import redact
from leadscore.metrics import SINK_ATTEMPTS, SINK_CIRCUIT, SINK_DELIVERIES, SINK_LATENCY
from leadscore.scoring.rules import MS_PER_DAY
from leadscore.sinks.breaker import STATE_VALUES
from leadscore.sinks.delivery import EndpointClient
from leadscore.sinks.files import wants_accounts
from leadscore.sinks.ledger import Ledger
from leadscore.sinks.notify_config import NotifyConfig
from leadscore.sinks.runner import SinkRunner, log

SINK = "notify"


class NotifySink:
    """Delivers each action to the endpoints that want it (a runner.SinkHandler)."""

    name = SINK
    required: tuple[str, ...] = ("action_id", "contact_id", "kind", "name", "score", "stage")

    def __init__(self, settings: Settings, config: NotifyConfig) -> None:
        self.config = config
        self.ledger = Ledger(
            settings.sink_data_dir / "notify",
            ttl_ms=int(settings.sink_dedupe_days * MS_PER_DAY),
            max_entries=settings.sink_dedupe_max_entries,
        )
        self.clients: list[EndpointClient] = []
        self.accounts = any(wants_accounts(e.spec.actions) for e in config.endpoints)
        self.session: aiohttp.ClientSession | None = None

    async def open(self, runner: SinkRunner) -> None:
        self.session = aiohttp.ClientSession()
        self.clients = [
            EndpointClient(e, self.session, self.config.link_template)
            for e in self.config.endpoints
        ]
        log.info("notify: endpoints: %s", ", ".join(e.name for e in self.config.endpoints))

    async def handle(self, runner: SinkRunner, action: dict[str, Any], message: Message) -> None:
        wanted = [c for c in self.clients if c.endpoint.wants(action["kind"], action["name"])]
        await asyncio.gather(*(self._deliver(runner, c, action, message) for c in wanted))

    async def _deliver(
        self, runner: SinkRunner, client: EndpointClient, action: dict[str, Any], message: Message
    ) -> None:
        name = client.endpoint.name
        key = f"{name}:{action['action_id']}"
        if self.ledger.seen(key):
            SINK_DELIVERIES.labels(SINK, name, "duplicate_suppressed").inc()
            return
        outcome = await client.deliver(action)
        SINK_ATTEMPTS.labels(SINK, name).inc(outcome.attempts)
        if outcome.delivered:
            self.ledger.add(key, int(time.time() * 1000))
            SINK_DELIVERIES.labels(SINK, name, "delivered").inc()
            emitted = action.get("emitted_at")
            if isinstance(emitted, int):
                SINK_LATENCY.labels(SINK, name).observe(max(0.0, time.time() - emitted / 1000))
            return
        log.warning(
            "notify: %s gave up on action %s for %s after %s attempt(s): %s",
            name,
            action["action_id"],
            redact(action.get("contact_id") or action["account_id"]),
            outcome.attempts,
            outcome.error,
        )
        await runner.dead_letter(
            message,
            "delivery_failed",
            endpoint=name,
            attempts=outcome.attempts,
            **{"error.message": outcome.error or ""},
        )
        SINK_DELIVERIES.labels(SINK, name, "dead_lettered").inc()

    def tick(self) -> None:
        for client in self.clients:
            SINK_CIRCUIT.labels(SINK, client.endpoint.name).set(STATE_VALUES[client.breaker.state])

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
        self.ledger.close()
