"""``leadscore sink notify``: deliver actions to Slack and signed JSON webhooks.

A confluent-kafka consumer in its own group (``<app id>-notify``) reads
leadscore.actions. Each action goes to every endpoint that wants its
``kind:name``, concurrently, each endpoint with its own rate limit, concurrency
and circuit breaker, so a dead endpoint does not hold up the others.

Nothing is lost: a partition's offset is committed only up to the first action
not yet finished, and an action is finished when each of its deliveries
succeeded or was written to the sink dead-letter topic (acknowledged by the
broker). Nothing is doubled by the sink: each successful delivery is recorded
in a ledger on disk, checked before delivering, so an action consumed again
after a crash or restart is not sent again. The one window: a crash after an
endpoint accepted a delivery and before the ledger recorded it sends it again
on restart, with the same ``Idempotency-Key`` (the action id), which the
receiver can use to drop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from typing import Any

import aiohttp
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition
from prometheus_client import start_http_server

from leadscore.config import Settings
from leadscore.errors import InvalidAction
from leadscore.logs import redact
from leadscore.metrics import (
    SINK_ATTEMPTS,
    SINK_CIRCUIT,
    SINK_DEAD_LETTERS,
    SINK_DELIVERIES,
    SINK_IN_FLIGHT,
    SINK_LATENCY,
)
from leadscore.scoring.rules import MS_PER_DAY
from leadscore.sinks.breaker import STATE_VALUES
from leadscore.sinks.delivery import EndpointClient
from leadscore.sinks.kafka import (
    dead_letter_headers,
    decode_action,
    position,
    records,
    sink_consumer,
    sink_producer,
)
from leadscore.sinks.ledger import Ledger
from leadscore.sinks.notify_config import NotifyConfig
from leadscore.sinks.offsets import Progress

log = logging.getLogger("leadscore.sink")

SINK = "notify"
COMMIT_EVERY_S = 0.5
BATCH = 200
REQUIRED = ("action_id", "contact_id", "kind", "name", "score", "stage")


class NotifySink:
    def __init__(self, settings: Settings, config: NotifyConfig) -> None:
        self.settings = settings
        self.config = config
        self.group = f"{settings.app_id}-notify"
        self.progress = Progress()
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopping = asyncio.Event()
        self.paused = False
        self.ledger = Ledger(
            settings.sink_data_dir / "notify",
            ttl_ms=int(settings.sink_dedupe_days * MS_PER_DAY),
            max_entries=settings.sink_dedupe_max_entries,
        )
        self.consumer = sink_consumer(
            settings,
            self.group,
            lag_of=SINK,
            **{"partition.assignment.strategy": "cooperative-sticky", "on_commit": self._committed},
        )
        self.producer = sink_producer(settings)
        self.clients: list[EndpointClient] = []
        self.failure: BaseException | None = None

    # -- Kafka -------------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("notify: assigned partitions %s", sorted(tp.partition for tp in partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Commit what is finished; in-flight actions of these partitions go to the next owner."""
        self._commit(only={tp.partition for tp in partitions}, wait=True)
        for tp in partitions:
            self.progress.forget(tp.partition)
        log.info("notify: revoked partitions %s", sorted(tp.partition for tp in partitions))

    def _commit(self, only: set[int] | None = None, wait: bool = False) -> None:
        """Commit what is finished. In the loop the commit is asynchronous (the broker's
        answer comes to ``_committed`` through the next consume); on revoke and at the
        end it waits, as the partitions are about to go."""
        offsets = []
        for partition, progress in self.progress.partitions.items():
            if only is not None and partition not in only:
                continue
            offset = progress.to_commit()
            if offset is not None:
                offsets.append(TopicPartition(self.settings.actions_topic, partition, offset))
        if not offsets:
            return
        try:
            if wait:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            else:
                self.consumer.commit(offsets=offsets, asynchronous=True)
        except Exception as exc:  # a failed commit is retried with the next one
            log.warning("notify: commit failed: %s", exc)
            return
        for tp in offsets:
            self.progress.of(tp.partition).committed = tp.offset

    def _committed(self, error: KafkaError | None, offsets: list[TopicPartition]) -> None:
        """The broker's answer to an asynchronous commit: a failed one is sent again."""
        if error is None:
            return
        log.warning("notify: commit failed, retrying with the next one: %s", error)
        for tp in offsets:
            progress = self.progress.partitions.get(tp.partition)
            if progress is not None and progress.committed == tp.offset:
                progress.committed = None

    async def _dead_letter(self, message: Message, reason: str, **details: object) -> None:
        """Write the original action to the sink DLQ; return once the broker has it."""
        loop = asyncio.get_running_loop()
        acked: asyncio.Future[None] = loop.create_future()

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if acked.done():
                return
            if err is not None:
                acked.set_exception(RuntimeError(str(err)))
            else:
                acked.set_result(None)

        headers = dead_letter_headers(SINK, reason, message, **details)
        while True:
            try:
                self.producer.produce(
                    self.settings.sink_dlq_topic,
                    key=message.key(),
                    value=message.value(),
                    headers=headers,
                    on_delivery=delivered,
                )
                break
            except BufferError:
                await asyncio.sleep(0.05)
        await acked  # the producer retries; an error here stops the sink (nothing committed)
        SINK_DEAD_LETTERS.labels(SINK, reason).inc()

    # -- one action ----------------------------------------------------------------------------

    async def _deliver(
        self, client: EndpointClient, action: dict[str, Any], message: Message
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
            redact(action["contact_id"]),
            outcome.attempts,
            outcome.error,
        )
        await self._dead_letter(
            message,
            "delivery_failed",
            endpoint=name,
            attempts=outcome.attempts,
            **{"error.message": outcome.error or ""},
        )
        SINK_DELIVERIES.labels(SINK, name, "dead_lettered").inc()

    async def _handle(self, message: Message) -> None:
        """Deliver one action; it counts as finished only when this returns normally.

        A cancelled or failed delivery leaves the offset pending: it is never committed.
        """
        try:
            action = decode_action(message.value(), REQUIRED)
        except InvalidAction as error:
            await self._dead_letter(message, error.reason, **{"error.message": str(error)})
        else:
            wanted = [c for c in self.clients if c.endpoint.wants(action["kind"], action["name"])]
            await asyncio.gather(*(self._deliver(c, action, message) for c in wanted))
        partition, offset = position(message)
        self.progress.of(partition).finished(offset)

    # -- the loop ------------------------------------------------------------------------------

    def _flow_control(self) -> None:
        """Pause every assigned partition while over the in-flight limit (newly assigned
        ones included), resume when below it."""
        over = self.progress.in_flight >= self.settings.sink_max_in_flight
        if over:
            self.consumer.pause(self.consumer.assignment())
            self.paused = True
        elif self.paused:
            self.consumer.resume(self.consumer.assignment())
            self.paused = False

    async def _consume(self) -> None:
        last_commit = time.monotonic()
        while not self.stopping.is_set():
            self._flow_control()
            messages = self.consumer.consume(num_messages=BATCH, timeout=0)
            self.producer.poll(0)  # serve DLQ delivery callbacks in this thread
            for message, partition, offset in records(messages, SINK):
                self.progress.of(partition).started(offset)
                task = asyncio.create_task(self._handle(message))
                self.tasks.add(task)
                task.add_done_callback(self._task_done)
            if time.monotonic() - last_commit >= COMMIT_EVERY_S:
                self._commit()
                last_commit = time.monotonic()
                SINK_IN_FLIGHT.labels(SINK).set(self.progress.in_flight)
                for client in self.clients:
                    SINK_CIRCUIT.labels(SINK, client.endpoint.name).set(
                        STATE_VALUES[client.breaker.state]
                    )
            if not messages:
                await asyncio.sleep(0.01)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("notify: stopping: %r", task.exception())
            self.failure = task.exception()
            self.stopping.set()

    async def run(self) -> int:
        """Consume and deliver until SIGTERM/SIGINT; 0 on a clean stop."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        if self.settings.sink_metrics_port:
            start_http_server(self.settings.sink_metrics_port)
        self.consumer.subscribe(
            [self.settings.actions_topic], on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        names = ", ".join(e.name for e in self.config.endpoints)
        log.info("notify: group %s, endpoints: %s", self.group, names)
        async with aiohttp.ClientSession() as session:
            self.clients = [
                EndpointClient(e, session, self.config.link_template) for e in self.config.endpoints
            ]
            consuming = asyncio.create_task(self._consume())
            await self.stopping.wait()
            await consuming
            await self._drain()
        self._commit(wait=True)
        self.consumer.close()
        self.producer.flush(10)
        self.ledger.close()
        log.info("notify: stopped")
        return 0 if self.failure is None else 1

    async def _drain(self) -> None:
        """Let in-flight deliveries finish for the grace period; the rest are redone later."""
        if not self.tasks:
            return
        grace = self.settings.sink_shutdown_grace_seconds
        log.info("notify: stopping, %s action(s) in flight (grace %.0f s)", len(self.tasks), grace)
        deadline = time.monotonic() + grace
        while self.tasks and time.monotonic() < deadline:
            self.producer.poll(0)
            await asyncio.sleep(0.05)
        for task in list(self.tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self.tasks, return_exceptions=True)
