"""The order in which a processed event's records reach Kafka: the whole rule, in one place.

A worker's guarantees (no event lost, none counted twice) rest on three orderings:

1. **Outputs before the changelog.** The records an event produces (actions,
   score changes, lead state, dead letters) are acknowledged by the broker
   before the changelog record of the table write that follows them is handed
   to the client. After a crash the changelog then holds only events whose
   outputs were all published, so an event found applied at restart has no
   output left to send. ``OutputFence`` keeps the count; every
   ``faust_ext.streams.Topic.send`` registers with it and the changelog buffer
   (``faust_ext.producer.OrderedProducerBuffer``) waits on it. The agent cannot
   send an output around it: the app's topics are that class.
2. **Changelog before the commit.** Offsets are committed only after every
   changelog record queued before the commit was handed to the client
   (``OrderedProducerBuffer.flush``, and under exactly_once the transaction
   commit flushes first).
3. **Under exactly_once, a commit between events.** A transaction holds whole
   events, each with its offset: the commit waits for the event in progress and
   no event starts until it is done (``EventGate``, entered by the app's stream
   for each event it hands out and left by the consumer's ack).

Under at_least_once the worker sends its changelog records itself, through
librdkafka, and ``leadscore.stream.pipeline`` keeps orderings 1 and 2 for
them (a batch's changelog records go out once its outputs are acknowledged,
and its events are acknowledged once those are); Faust's buffer then carries
no table writes. The fence and the buffer keep them under exactly_once.

Each app has its own fence and gate (``faust_ext.app.App.outputs`` and
``.between_events``); nothing here is process-wide.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any

from leadscore.errors import ConfigError, OutputNotDelivered


class OutputFence:
    """Output sends in the order they were made, until the broker acknowledges them."""

    def __init__(self) -> None:
        self._issued = 0
        self._pending: dict[int, asyncio.Future[Any]] = {}  # insertion order = send order
        self._settled = asyncio.Event()

    def track(self, sent: Awaitable[Any]) -> None:
        """Register an output send (the future a Faust ``Topic.send`` returns)."""
        future = asyncio.ensure_future(sent)
        self._issued += 1
        number = self._issued
        self._pending[number] = future
        future.add_done_callback(lambda _: self._settle(number))

    def mark(self) -> int:
        """The number of output sends made so far."""
        return self._issued

    def _settle(self, number: int) -> None:
        future = self._pending.get(number)
        if future is not None and _delivered(future):
            del self._pending[number]  # a failed send stays, and stops every later wait
        self._settled.set()

    async def wait(self, mark: int) -> None:
        """Until the first ``mark`` output sends are acknowledged; raise if one failed."""
        while self._pending:
            number, future = next(iter(self._pending.items()))
            if number > mark:
                return
            if not future.done():
                self._settled.clear()
                await self._settled.wait()
            elif _delivered(future):  # done, its callback not run yet
                del self._pending[number]
            else:
                raise OutputNotDelivered(
                    "an output record was not delivered, so the table writes after it "
                    f"are held back: {future.exception()!r}"
                )


def _delivered(future: asyncio.Future[Any]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


class EventGate:
    """Lets a commit happen only between events."""

    def __init__(self) -> None:
        self._busy: set[int] = set()  # ids of the messages being processed
        self._idle = asyncio.Event()
        self._idle.set()
        self._open = asyncio.Event()
        self._open.set()
        self._closers = 0

    @property
    def busy(self) -> bool:
        """Events are being processed (handed out and not yet acknowledged)."""
        return bool(self._busy)

    @property
    def is_open(self) -> bool:
        """No commit is waiting: an event may start."""
        return self._open.is_set()

    async def enter(self, message: Any) -> None:
        """Before processing ``message``: wait while a commit is under way."""
        await self._open.wait()
        self._busy.add(id(message))
        self._idle.clear()

    def leave(self, message: Any) -> None:
        """``message`` was acknowledged (or released): its processing is over."""
        self._busy.discard(id(message))
        if not self._busy:
            self._idle.set()

    @asynccontextmanager
    async def closed(self) -> AsyncIterator[None]:
        """No event starts inside, and the events in progress have finished."""
        self._closers += 1
        self._open.clear()
        try:
            await self._idle.wait()
            yield
        finally:
            self._closers -= 1
            if not self._closers:
                self._open.set()


def outputs_of(app: Any) -> OutputFence:
    """``app``'s output fence (a ``faust_ext.app.App`` has one)."""
    fence = getattr(app, "outputs", None)
    if not isinstance(fence, OutputFence):
        raise ConfigError(f"{app!r} is not a leadscore.stream.faust_ext.App: it has no fence")
    return fence


def gate_of(app: Any) -> EventGate:
    """``app``'s event gate (a ``faust_ext.app.App`` has one)."""
    gate = getattr(app, "between_events", None)
    if not isinstance(gate, EventGate):
        raise ConfigError(f"{app!r} is not a leadscore.stream.faust_ext.App: it has no gate")
    return gate
