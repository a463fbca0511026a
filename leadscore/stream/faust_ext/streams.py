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
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, cast

import faust
from mode.utils.queues import FlowControlEvent

from leadscore.stream.faust_ext.ordering import gate_of, outputs_of


class Stream(faust.Stream[Any]):
    """Faust's stream on its pure-Python iterator, gated between events."""

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
                    await gate.enter(event.message)  # left when the consumer acks it
                yield value
        finally:
            await values.aclose()


class Topic(faust.Topic):
    """Faust's topic; each send registers with the app's output fence."""

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
