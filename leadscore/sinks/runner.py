"""The one loop both sinks run: consume actions, act on each, dead-letter, commit, stop.

A sink is a ``SinkHandler``: what it does with one valid action. The runner owns
everything else, the same way for every sink:

- **Consuming.** A confluent-kafka consumer in the sink's own group
  (``<app id>-<sink>``, cooperative-sticky assignment) reads leadscore.actions
  (and leadscore.account-actions when the sink's file names account actions).
  Each record becomes an asyncio task, started in offset order; at most
  ``LEADSCORE_SINK_MAX_IN_FLIGHT`` are in flight (over it, every assigned
  partition is paused). Whatever a handler does before its first ``await``
  runs in consumption order, which is what a sink with ordered state (routing)
  relies on.
- **Dead letters.** A record that is not a valid LeadAction (AccountAction) goes to the sink
  dead-letter topic with its reason, and counts as done once the broker has it.
  Handlers dead-letter their own failures (an endpoint that gave up) the same way.
- **Commits.** A partition's offset is committed only up to its first record
  not yet done (``offsets.Progress``), every ``COMMIT_EVERY_S`` and, waiting,
  when partitions are revoked and at the stop. A record whose task failed is
  never done: the sink stops (exit 1) and it is consumed again after a restart.
- **Signals.** SIGTERM and SIGINT stop it: no new records, in-flight ones get
  ``LEADSCORE_SINK_SHUTDOWN_GRACE_SECONDS`` to finish, then what is done is
  committed (exit 0). SIGUSR1 writes every thread's stack to stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import signal
import sys
import time
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition
from prometheus_client import start_http_server

from leadscore.config import Settings
from leadscore.errors import InvalidAction, NotAcknowledged
from leadscore.metrics import SINK_DEAD_LETTERS, SINK_IN_FLIGHT
from leadscore.sinks.kafka import (
    Headers,
    dead_letter_headers,
    decode_action,
    position,
    records,
    sink_consumer,
    sink_producer,
)
from leadscore.sinks.offsets import Progress

log = logging.getLogger("leadscore.sink")

COMMIT_EVERY_S = 0.5
BATCH = 200
#: What every account action must carry (beyond the AccountAction schema).
ACCOUNT_REQUIRED = ("action_id", "account_id", "kind", "name", "score", "emitted_at")


def _named(partitions: list[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}[{tp.partition}]" for tp in partitions)


class SinkHandler(Protocol):
    #: The sink's name: its consumer group suffix, metric label and log prefix.
    name: str
    #: Fields an action must carry for this sink (beyond the LeadAction schema).
    required: tuple[str, ...]
    #: Whether the sink acts on account actions too (it then reads leadscore.account-actions).
    accounts: bool

    async def open(self, runner: SinkRunner) -> None:
        """Before consuming (rebuild state, open sessions)."""

    async def handle(self, runner: SinkRunner, action: dict[str, Any], message: Message) -> None:
        """Act on one valid action (``runner`` produces and dead-letters). Returning
        means done; raising stops the sink."""

    def tick(self) -> None:
        """Every ``COMMIT_EVERY_S`` in the loop (gauges, housekeeping)."""

    async def close(self) -> None:
        """After the last action is done or given up."""


class SinkRunner:
    def __init__(self, settings: Settings, handler: SinkHandler) -> None:
        self.settings = settings
        self.handler = handler
        self.name = handler.name
        self.group = f"{settings.app_id}-{handler.name}"
        self.topics = [settings.actions_topic]
        if handler.accounts:
            self.topics.append(settings.account_actions_topic)
        self.progress = Progress()
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopping = asyncio.Event()
        self.paused = False
        self.failure: BaseException | None = None
        self.consumer = sink_consumer(
            settings,
            self.group,
            lag_of=handler.name,
            **{"partition.assignment.strategy": "cooperative-sticky", "on_commit": self._committed},
        )
        self.producer = sink_producer(settings)

    # -- producing -----------------------------------------------------------------------------

    async def produce(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers | None = None
    ) -> None:
        """Produce one record and return once the broker has it (NotAcknowledged if
        it refuses it after the producer's own retries)."""
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if acked.done():
                return
            if err is not None:
                acked.set_exception(NotAcknowledged(f"{topic}: {err}"))
            else:
                acked.set_result(None)

        while True:
            try:
                self.producer.produce(
                    topic, key=key, value=value, headers=headers, on_delivery=delivered
                )
                break
            except BufferError:  # the producer's queue is full: let it drain
                self.producer.poll(0.01)
                await asyncio.sleep(0)
        await acked

    async def dead_letter(self, message: Message, reason: str, **details: object) -> None:
        """Write the original record to the sink dead-letter topic with why; return once
        the broker has it."""
        headers = dead_letter_headers(self.name, reason, message, **details)
        await self.produce(self.settings.sink_dlq_topic, message.key(), message.value(), headers)
        SINK_DEAD_LETTERS.labels(self.name, reason).inc()

    # -- commits -------------------------------------------------------------------------------

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("%s: assigned partitions %s", self.name, _named(partitions))

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Commit what is done; in-flight records of these partitions go to the next owner."""
        self._commit(only={(tp.topic, tp.partition) for tp in partitions}, wait=True)
        for tp in partitions:
            self.progress.forget((tp.topic, tp.partition))
        log.info("%s: revoked partitions %s", self.name, _named(partitions))

    def _commit(self, only: set[tuple[str, int]] | None = None, wait: bool = False) -> None:
        """Commit what is done. In the loop the commit is asynchronous (the broker's
        answer comes to ``_committed`` through the next consume); on revoke and at the
        end it waits, as the partitions are about to go."""
        offsets = []
        for (topic, partition), progress in self.progress.partitions.items():
            if only is not None and (topic, partition) not in only:
                continue
            offset = progress.to_commit()
            if offset is not None:
                offsets.append(TopicPartition(topic, partition, offset))
        if not offsets:
            return
        try:
            if wait:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            else:
                self.consumer.commit(offsets=offsets, asynchronous=True)
        except Exception as exc:  # a failed commit is retried with the next one
            log.warning("%s: commit failed: %s", self.name, exc)
            return
        for tp in offsets:
            self.progress.of((tp.topic, tp.partition)).committed = tp.offset

    def _committed(self, error: KafkaError | None, offsets: list[TopicPartition]) -> None:
        """The broker's answer to an asynchronous commit: a failed one is sent again."""
        if error is None:
            return
        log.warning("%s: commit failed, retrying with the next one: %s", self.name, error)
        for tp in offsets:
            progress = self.progress.partitions.get((tp.topic, tp.partition))
            if progress is not None and progress.committed == tp.offset:
                progress.committed = None

    # -- one record ----------------------------------------------------------------------------

    async def _handle(self, message: Message) -> None:
        """Act on one record; it is done only when this returns normally."""
        account = message.topic() == self.settings.account_actions_topic
        try:
            if account:
                action = decode_action(message.value(), ACCOUNT_REQUIRED, "AccountAction")
            else:
                action = decode_action(message.value(), self.handler.required)
        except InvalidAction as error:
            await self.dead_letter(message, error.reason, **{"error.message": str(error)})
        else:
            await self.handler.handle(self, action, message)
        partition, offset = position(message)
        self.progress.of((str(message.topic()), partition)).finished(offset)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: stopping: %r", self.name, task.exception())
            self.failure = task.exception()
            self.stopping.set()

    # -- the loop ------------------------------------------------------------------------------

    def _flow_control(self) -> None:
        """Pause every assigned partition while over the in-flight limit (newly assigned
        ones included), resume when below it."""
        if self.progress.in_flight >= self.settings.sink_max_in_flight:
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
            self.producer.poll(0)  # serve delivery callbacks in this thread
            for message, partition, offset in records(messages, self.name):
                self.progress.of((str(message.topic()), partition)).started(offset)
                task = asyncio.create_task(self._handle(message))
                self.tasks.add(task)
                task.add_done_callback(self._task_done)
            if time.monotonic() - last_commit >= COMMIT_EVERY_S:
                self._commit()
                last_commit = time.monotonic()
                SINK_IN_FLIGHT.labels(self.name).set(self.progress.in_flight)
                self.handler.tick()
            if not messages:
                await asyncio.sleep(0.01)
            else:
                await asyncio.sleep(0)  # let the new tasks start, in order

    async def _drain(self) -> None:
        """Let in-flight records finish for the grace period; the rest are redone later."""
        if not self.tasks:
            return
        grace = self.settings.sink_shutdown_grace_seconds
        log.info(
            "%s: stopping, %s action(s) in flight (grace %.0f s)", self.name, len(self.tasks), grace
        )
        deadline = time.monotonic() + grace
        while self.tasks and time.monotonic() < deadline:
            self.producer.poll(0)
            await asyncio.sleep(0.05)
        for task in list(self.tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self.tasks, return_exceptions=True)

    async def run(self) -> int:
        """Consume and act until SIGTERM/SIGINT; 0 on a clean stop, 1 after a failure."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
        if self.settings.sink_metrics_port:
            start_http_server(self.settings.sink_metrics_port)
        await self.handler.open(self)
        self.consumer.subscribe(self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke)
        log.info("%s: group %s", self.name, self.group)
        consuming = asyncio.create_task(self._consume())
        stopped = asyncio.create_task(self.stopping.wait())
        await asyncio.wait({consuming, stopped}, return_when=asyncio.FIRST_COMPLETED)
        self.stopping.set()
        stopped.cancel()  # done already, unless the loop broke first
        await consuming  # raises what broke the loop (the broker, the disk)
        await self._drain()
        self._commit(wait=True)
        self.consumer.close()
        self.producer.flush(10)
        await self.handler.close()
        log.info("%s: stopped", self.name)
        return 0 if self.failure is None else 1


def run_sink(settings: Settings, handler: SinkHandler) -> int:
    """Run a sink until it stops; its exit code."""
    return asyncio.run(SinkRunner(settings, handler).run())
