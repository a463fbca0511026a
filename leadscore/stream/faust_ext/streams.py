"""Streams, topics and flow control: where events are handed out and outputs leave.

**The stream acknowledges through the consumer** (``Stream.__aiter__``; upstream:
faust-streaming PRs #208 and #488 fixed acks the compiled iterator skipped, and
#762 found it had never run under a test). Faust's Cython ``StreamIterator``
inlines ``Message.ack`` and ``Consumer.ack`` instead of calling them, so the
consumer's ``ack`` (``consumer.Consumer.ack``, which keeps a rebalance's skipped
records from counting as processed and lets a commit wait for the event in
progress) never saw a record a stream acknowledged (an exactly_once worker
never committed, with 2,587 records acknowledged but never let out of the
gate). This stream always runs Faust's pure-Python iterator, as with
``NO_CYTHON=1``, and enters the app's ``EventGate`` for each event it hands out.

**Every output is fenced** (``Topic.send``): see ``ordering``. A topic's
``send`` registers the send with the app's ``OutputFence``; table changelogs
use ``send_soon`` and are the records the fence holds back.

**Resuming running flow keeps the buffered records** (``FlowControl.resume``;
upstream #216, #217 reordered resume and seek for apps without tables, not
this). Faust's recovery ends by seeking the event partitions to their committed
offsets and then calling ``app.flow_control.resume()``, which clears every
stream buffer. But flow is already running then (recovery resumed it to read
the changelogs), so the records fetched after the seek were dropped, never
processed, with the fetch position past them (a worker starting without a
committed offset processed partition 2 from offset 1; 2 of 24 SIGKILL runs).
Resuming running flow leaves the buffers alone; resuming suspended flow still
clears what a revocation left.

**Batches never wait while holding events** (``Stream.batches``). A batch is
what has already arrived, up to a size: the stream hands out events until the
next one would have to be waited for, then hands out ``FLUSH``, and the batch
is yielded. Holding events while waiting for more would stall everything that
waits for held events to be acknowledged: an exactly_once commit (the gate)
and a rebalance (Faust's ``wait_empty``, which has no timeout). So the wait
itself says when: the topic's ``__anext__``, which Faust's iterator calls only
when the queue is empty, returns ``FLUSH`` instead of waiting while a batch is
being collected; and an event that arrives while a commit has closed the gate
is preceded by ``FLUSH`` too. Events yielded in a batch and not acknowledged
yet (the at_least_once pipeline's) are not waited on: the caller acknowledges
them without the stream. (Faust's ``take_events`` waits up to a timeout for a
full buffer, with the events already taken held.)

**A table reads and writes the partition of the event being processed**
(``in_partition_of``). Faust's tables take the partition of a read, a write and
its changelog record from the current event, which its iterator sets for each
event it hands out. A batch holds events of many partitions, so the worker
makes each event of the batch current in turn, the way the iterator does,
around the table calls for the leads of that event's partition.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any, cast

import faust
from faust.streams import _current_event
from mode.utils.queues import FlowControlEvent

from leadscore.stream.faust_ext.ordering import gate_of, outputs_of


class Flush:
    """The stream's marker for "the events handed out so far are a batch"."""

    def __repr__(self) -> str:
        return "FLUSH"


FLUSH = Flush()


class Stream(faust.Stream[Any]):
    """Faust's stream on its pure-Python iterator, gated between events."""

    async def batches(self, max_: int, *, acknowledge: bool = True) -> AsyncIterator[list[Any]]:
        """Lists of up to ``max_`` events that had arrived.

        With ``acknowledge``, each batch is acknowledged once the caller asks for the
        next. Without, the caller acknowledges them (``Stream.ack``) when it is done,
        from any task: the stream does not wait for that.
        """
        channel = self.channel
        if not isinstance(channel, Topic):
            raise TypeError(f"batches() needs a leadscore Topic to read, not {channel!r}")
        self.enable_acks = False  # acknowledged here or by the caller, never by Faust
        batch: list[Any] = []
        async for value in self:
            if value is not FLUSH:
                batch.append(self.current_event)
                channel.collecting = len(batch)
                if len(batch) < max_:
                    continue
            if batch:
                channel.collecting = 0
                yield batch
                if acknowledge:
                    for event in batch:
                        await self.ack(event)
                batch = []

    def __aiter__(self) -> AsyncIterator[Any]:
        values = self._gated(cast(AsyncGenerator[Any, None], self._py_aiter()))
        self._active_agens.add(values)  # closed by on_stop, as Faust tracks its own
        return values

    async def _gated(self, values: AsyncGenerator[Any, None]) -> AsyncGenerator[Any, None]:
        gate = gate_of(self.app)
        try:
            async for value in values:
                event = self.current_event
                if event is not None:
                    if gate.busy and not gate.is_open:  # a commit waits for the held events
                        yield FLUSH
                        self.current_event = event
                    await gate.enter(event.message)  # left when the consumer acks it
                yield value
        finally:
            await values.aclose()


class Topic(faust.Topic):
    """Faust's topic; each send registers with the app's output fence."""

    #: Events handed out into the batch ``Stream.batches`` is collecting from this
    #: channel: waiting for a record while there are any hands out ``FLUSH`` first.
    collecting = 0

    async def __anext__(self) -> Any:
        # Faust's iterator calls this only when the queue is empty, that is, to wait.
        if self.collecting:
            return FLUSH
        return await super().__anext__()

    async def send(self, **kwargs: Any) -> Any:
        sent = await super().send(**kwargs)
        outputs_of(self.app).track(sent)
        return sent


class FlowControl(FlowControlEvent):
    """mode's flow control, which does not clear buffers when flow already runs."""

    def resume(self) -> None:
        if self.is_active():
            return  # the buffers hold current records
        super().resume()


@contextmanager
def in_partition_of(event: Any) -> Iterator[None]:
    """Make ``event`` the current event, as Faust's stream iterator does for each event."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)
