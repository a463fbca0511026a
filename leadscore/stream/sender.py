"""Outputs through librdkafka under at_least_once: a batch produced, then every delivery awaited.

Faust's send path (its topic, producer buffer and aiokafka) costs about 200 µs
per record on this machine's worker profile; ``confluent_kafka.Producer.produce``
costs about 1.3 µs. Under at_least_once nothing ties an output to a transaction,
so the worker sends a batch's outputs through one idempotent librdkafka producer
(``murmur2_random``: a contact's records land on the partition every Java
client and Faust would choose) and waits until each is acknowledged, the
delivery fence of the batch. The wait is registered with the app's output fence
(``faust_ext.ordering``), so no changelog record of the batch can reach Kafka
before the outputs, even if a table were written early. Under exactly_once the
outputs stay in Faust's transactions.

A failed delivery raises ``OutputNotDelivered``: an output that librdkafka gave
up on (after ``message.timeout.ms``) is an infrastructure failure, and the
worker stops without acknowledging the batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

from confluent_kafka import KafkaError, Message, Producer

from leadscore.config import PRODUCER_MAX_REQUEST_BYTES, Settings
from leadscore.errors import OutputNotDelivered
from leadscore.stream.faust_ext.ordering import OutputFence

#: How long one wait for deliveries blocks a thread before the loop looks again.
FLUSH_SLICE_S = 0.5

#: (topic, key, value, headers)
Record = tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]] | None]


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

    async def send_all(self, records: Sequence[Record]) -> list[tuple[int, int]]:
        """Send ``records`` and wait for all of them: (partition, offset) of each, in order."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self.fence.track(done)
        try:
            landed = await self._send(records)
        except BaseException as error:
            done.set_exception(error if isinstance(error, Exception) else OutputNotDelivered())
            done.exception()  # retrieved here; the fence re-raises its own error
            raise
        done.set_result(None)
        return landed

    async def _send(self, records: Sequence[Record]) -> list[tuple[int, int]]:
        landed: list[tuple[int, int]] = [(-1, -1)] * len(records)
        failures: list[str] = []

        def delivered_to(index: int) -> Any:
            def on_delivery(error: KafkaError | None, message: Message) -> None:
                if error is not None:
                    failures.append(f"{message.topic()}: {error}")
                else:
                    landed[index] = (message.partition() or 0, message.offset() or 0)

            return on_delivery

        produce = self.producer.produce
        for index, (topic, key, value, headers) in enumerate(records):
            while True:
                try:
                    produce(
                        topic,
                        value,
                        key,
                        headers=cast(Any, headers),
                        on_delivery=delivered_to(index),
                    )
                    break
                except BufferError:  # the local queue is full: let deliveries drain
                    await asyncio.to_thread(self.producer.poll, 0.1)
        while await asyncio.to_thread(self.producer.flush, FLUSH_SLICE_S):
            pass
        if failures:
            raise OutputNotDelivered(
                f"{len(failures)} output record(s) were not delivered, so the batch's table "
                f"writes are held back: {failures[0]}"
            )
        return landed
