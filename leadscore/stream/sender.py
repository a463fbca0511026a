"""Records through librdkafka under at_least_once: a batch produced, then its deliveries awaited.

Faust's send path (its topic, producer buffer and aiokafka) costs about 200 µs
per record on this machine's worker profile; ``confluent_kafka.Producer.produce``
costs about 1.3 µs. Under at_least_once nothing ties a record to a transaction,
so the worker sends a batch's outputs, and then its changelog records, through
one idempotent librdkafka producer (``murmur2_random``: a contact's records land
on the partition every Java client and Faust would choose; changelog records
name their partition) and waits until each is acknowledged: the batch's
delivery fences. An output send is registered with the app's output fence
(``faust_ext.ordering``), so no changelog record Faust buffers can reach Kafka
before it. Under exactly_once everything stays in Faust's transactions.

Delivery reports are served on the event loop: while any send waits, a pump
task calls ``poll(0)`` and sleeps a little when nothing was ready. A polling
thread instead had to take the GIL for every report's callback while the loop
thread scored, and landing a batch took tens of milliseconds. A ``send_all``
is woken once, when the last of its records is acknowledged, so two batches in
flight (one's outputs, an earlier one's changelog) each wait for their own
records only. The idempotent producer keeps each partition's records in the
order they were produced, across retries.

A failed delivery raises ``OutputNotDelivered``: a record that librdkafka gave
up on (after ``message.timeout.ms``) is an infrastructure failure, and the
worker stops without acknowledging the batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, cast

from confluent_kafka import KafkaError, Message, Producer

from leadscore.config import PRODUCER_MAX_REQUEST_BYTES, Settings
from leadscore.errors import OutputNotDelivered
from leadscore.stream.faust_ext.ordering import OutputFence

#: How long the pump sleeps when no delivery report was ready (about the loop's timer
#: resolution: a report waits at most this long once the loop is free).
PUMP_IDLE_S = 0.0005

#: librdkafka's "no partition given": its partitioner picks one from the key.
BY_KEY = -1

#: (topic, partition or None for the key's, key, value, headers)
Record = tuple[str, int | None, bytes | None, bytes | None, list[tuple[str, bytes]] | None]


class _Delivery:
    """The delivery reports of one ``send_all``, resolved on the event loop once all are in."""

    def __init__(self, count: int, loop: asyncio.AbstractEventLoop) -> None:
        self.waiting = count
        self.landed: list[tuple[int, int]] = [(-1, -1)] * count
        self.failures: list[str] = []
        self.done: asyncio.Future[None] = loop.create_future()

    def report(self, index: int) -> Callable[[KafkaError | None, Message], None]:
        def on_delivery(error: KafkaError | None, message: Message) -> None:
            # Runs in the pump's poll(0), on the event loop.
            if error is not None:
                self.failures.append(f"{message.topic()}: {error}")
            else:
                self.landed[index] = (message.partition() or 0, message.offset() or 0)
            self.waiting -= 1
            if not self.waiting and not self.done.done():
                self.done.set_result(None)

        return on_delivery


class DirectSender:
    def __init__(self, settings: Settings, fence: OutputFence) -> None:
        self.fence = fence
        self.producer = Producer(
            {
                **settings.confluent_config(),
                "enable.idempotence": True,
                "acks": "all",
                "partitioner": "murmur2_random",
                "linger.ms": 1,
                "message.max.bytes": PRODUCER_MAX_REQUEST_BYTES,
                "queue.buffering.max.messages": 1_000_000,
            }
        )
        self._waiting = 0  # sends waiting for their reports
        self._pump: asyncio.Task[None] | None = None

    async def _serve_reports(self) -> None:
        poll = self.producer.poll
        while self._waiting:
            if poll(0):
                await asyncio.sleep(0)  # others may be ready to use what was reported
            else:
                await asyncio.sleep(PUMP_IDLE_S)
        self._pump = None

    async def send_all(self, records: Sequence[Record]) -> list[tuple[int, int]]:
        """Send outputs and wait for all of them: (partition, offset) of each, in order.

        The wait is registered with the app's output fence.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self.fence.track(done)
        try:
            landed = await self.deliver(records)
        except BaseException as error:
            done.set_exception(error if isinstance(error, Exception) else OutputNotDelivered())
            done.exception()  # retrieved here; the fence re-raises its own error
            raise
        done.set_result(None)
        return landed

    async def deliver(self, records: Sequence[Record]) -> list[tuple[int, int]]:
        """Send ``records`` and wait for all of them: (partition, offset) of each, in order."""
        if not records:
            return []
        delivery = _Delivery(len(records), asyncio.get_running_loop())
        self._waiting += 1
        try:
            return await self._deliver(records, delivery)
        finally:
            self._waiting -= 1

    async def _deliver(
        self, records: Sequence[Record], delivery: _Delivery
    ) -> list[tuple[int, int]]:
        produce = self.producer.produce
        for index, (topic, partition, key, value, headers) in enumerate(records):
            on_delivery = delivery.report(index)
            while True:
                try:
                    produce(
                        topic,
                        value,
                        key,
                        BY_KEY if partition is None else partition,
                        headers=cast(Any, headers),
                        on_delivery=on_delivery,
                    )
                    break
                except BufferError:  # the local queue is full: let reports drain it
                    self.producer.poll(0.01)
                    await asyncio.sleep(0)
        if self._pump is None:
            self._pump = asyncio.ensure_future(self._serve_reports())
        await delivery.done
        if delivery.failures:
            raise OutputNotDelivered(
                f"{len(delivery.failures)} record(s) were not delivered, so the batch is "
                f"not acknowledged: {delivery.failures[0]}"
            )
        return delivery.landed
