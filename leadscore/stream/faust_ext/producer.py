"""The producing side: changelog records after their outputs, commits after the changelog.

Faust's table writes reach Kafka through the producer's ``ProducerBuffer``:
``table[key] = value`` queues the changelog record and a background task hands
it to the client. Output records (``Topic.send``) go to the client directly.

**Changelog before the commit** (upstream: faust-streaming PR #112 made
``flush`` wait for an empty buffer, PR #273 flushes before a commit; neither
covers a buffer that keeps filling, nor the exactly_once commit).
``ProducerBuffer.flush()`` returned as soon as no record had left the buffer for
0.1 s, with records still queued, and under exactly_once the transaction commit
did not flush at all. The offsets of events whose table writes were still queued
were committed; a SIGKILL then lost those writes while their events counted as
processed, and a re-delivery was scored as new (``leadscore verify``: "event
counted twice" after 3 kills of 8,000 events). ``OrderedProducerBuffer.flush``
waits until every record queued *before it was called* has been handed to the
client (records are numbered as they are queued); waiting for an empty queue
instead starved while writes kept arriving (a commit waited 240 s in one run).
``TransactionManager.commit`` flushes first.

**Outputs before the changelog** (no upstream report; Faust sends both
asynchronously, to different partitions, with no order between them). A SIGKILL
could land after an event's changelog records were delivered and before its
outputs were; the restarted worker found the event applied and never sent them
(2 threshold actions lost in 8,000 events with 3 kills). The buffer hands a
record to the client only once every output sent before it was queued has been
acknowledged (``ordering.OutputFence``).

**Under exactly_once, outputs inside the event's transaction** (upstream:
faust-streaming issues #177 and #517, duplicates despite exactly_once). Faust
picks a record's transaction by the partition its key hashes to, looked up in
the *consumer's* metadata, which has only the topics it reads; for an output
topic the lookup gave nothing and the record went out on the plain producer,
visible at once and never rolled back (2,867 score changes repeated in 8,000
events with 3 kills). A record sent while an event is processed, without an
explicit partition, goes into the transaction of that event's partition (one
transaction per input partition, as in Kafka Streams); records with an explicit
partition (table writes) keep Faust's choice, which is the same transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable
from contextlib import suppress
from typing import Any

from faust import current_event
from faust.transport.consumer import TransactionManager as FaustTransactionManager
from faust.transport.drivers.aiokafka import Producer as FaustProducer
from faust.transport.producer import ProducerBuffer

from leadscore.errors import ChangelogUnsent
from leadscore.stream.faust_ext.ordering import outputs_of

log = logging.getLogger("leadscore.stream.faust_ext.producer")


class OrderedProducerBuffer(ProducerBuffer):
    """Faust's producer buffer, fenced behind the outputs and with an exact flush."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queued = 0  # records put so far
        self.handed = 0  # records handed to the client so far (FIFO: a queue position)
        self.marks: deque[int] = deque()  # per queued record: the output count at its put

    def _threaded(self) -> bool:
        # A threaded producer takes records from its own queue, not through _send_pending.
        return self.app is not None and bool(self.app.conf.producer_threaded)

    def put(self, fut: Any) -> None:
        if not self._threaded():
            self.queued += 1
            self.marks.append(outputs_of(self.app).mark())
        super().put(fut)

    async def _send_pending(self, fut: Any) -> None:
        # One task takes records off the FIFO queue and calls this for each in turn,
        # so the marks line up with the records.
        await outputs_of(self.app).wait(self.marks.popleft())
        await super()._send_pending(fut)
        self.handed += 1

    async def flush(self) -> None:
        """Return once every record queued before this call is with the Kafka client."""
        if self._threaded():
            return await super().flush()
        target = self.queued
        while self.handed < target:
            if self.state != "running":
                raise ChangelogUnsent(
                    f"cannot flush: the producer is {self.state} with "
                    f"{target - self.handed} changelog record(s) unsent"
                )
            self.message_sent.clear()
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.message_sent.wait(), timeout=0.1)


class Producer(FaustProducer):
    """The aiokafka driver's producer with an ``OrderedProducerBuffer``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Faust's __init__ builds a plain ProducerBuffer (not started: services start
        # in on_start); this one replaces it on this instance, wired the same way.
        self.buffer = OrderedProducerBuffer(loop=self.loop, beacon=self.beacon)
        if self.threaded_producer is not None:
            self.buffer.threaded_producer = self.threaded_producer
        self.buffer.app = self.app


class TransactionManager(FaustTransactionManager):
    """Commits after the changelog; outputs in the transaction of their event."""

    async def commit(self, offsets: Any, start_new_transaction: bool = True) -> bool:
        await self.app.producer.buffer.flush()
        await self.reopen_ended(offsets)
        return bool(await super().commit(offsets, start_new_transaction=start_new_transaction))

    async def reopen_ended(self, offsets: Any) -> None:
        """Begin a transaction again where a commit that ended the transactions came first.

        Stopping, Faust commits and ends the transactions twice: the app's stop waits
        for the streams (``wait_empty``, ending with a commit that begins no new
        transaction), then the consumer's own stop does the same. Records acknowledged
        between the two (a duplicate share or event: processed, nothing sent) left
        offsets for the second commit, whose producer was in no transaction:
        ``IllegalOperation: Not in the middle of a transaction``, the consumer's stop
        failed and the worker ignored SIGTERM until its stop timeout (fault tier, two
        workers under exactly_once, 1 run in 2). Their offsets now go in a transaction of
        their own.
        """
        producers = getattr(self.producer, "_transaction_producers", {})
        group_id = self.app.conf.id
        for tp in offsets:
            group = self.app.assignor.group_for_topic(tp.topic)
            transactional_id = f"{group_id}-{group}-{tp.partition}"
            client = producers.get(transactional_id)
            manager = getattr(client, "_txn_manager", None)
            if manager is not None and not manager.is_in_transaction():
                log.warning(
                    "offsets to commit after the transactions ended (%s[%d] to %d): "
                    "committed in a transaction of their own",
                    tp.topic,
                    tp.partition,
                    offsets[tp],
                )
                await self.producer.maybe_begin_transaction(transactional_id)

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
        *,
        transactional_id: str | None = None,
    ) -> Awaitable[Any]:
        event = current_event()
        if event is None or partition is not None:
            return await super().send(topic, key, value, partition, timestamp, headers)
        source = event.message
        group = self.app.assignor.group_for_topic(source.topic)
        return await self.producer.send(
            topic,
            key,
            value,
            None,
            timestamp,
            headers,
            transactional_id=f"{self.app.conf.id}-{group}-{source.partition}",
        )
