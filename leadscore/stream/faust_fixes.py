"""Workarounds for faust-streaming defects that lose state under faults.

Found by the fault tier (tests/faults), each with the symptom it caused there.

1. **A commit can overtake the changelog.** Table writes reach Kafka through
   Faust's ``ProducerBuffer``: ``table[key] = value`` queues the changelog
   record, and a background task hands it to the client. Before committing
   offsets Faust calls ``ProducerBuffer.flush()``, but that returns as soon as
   no record has left the buffer for 0.1 s, with records still queued (and under
   exactly_once the transaction commit does not flush the buffer at all). The
   offsets of events whose table writes were still queued were committed; a
   SIGKILL then lost those writes while their events counted as processed, so a
   later re-delivery of such an event was scored as new (seen as "event counted
   twice" by ``leadscore verify`` after 3 kills of 8,000 events).

   Fix: ``flush()`` waits until the queue is empty *and* no record is between
   the queue and the client, and the exactly_once commit flushes it first.

2. **An exception in an agent commits the record it failed on.** See
   ``leadscore.stream.app.stop_unprocessed``; that one is handled in the agent.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import Any

from faust.transport.consumer import TransactionManager
from faust.transport.producer import ProducerBuffer

_IN_HAND = "_leadscore_in_hand"
_applied = False


_faust_send_pending = ProducerBuffer._send_pending


async def _send_pending(self: ProducerBuffer, fut: Any) -> None:
    # _handle_pending takes a record off the queue and calls this with no await in
    # between, so "queue empty and none in hand" means every record reached the client.
    setattr(self, _IN_HAND, getattr(self, _IN_HAND, 0) + 1)
    try:
        await _faust_send_pending(self, fut)
    finally:
        setattr(self, _IN_HAND, getattr(self, _IN_HAND) - 1)


async def _flush(self: ProducerBuffer) -> None:
    """Return only once every buffered record has been handed to the Kafka client."""
    while self.pending.qsize() or getattr(self, _IN_HAND, 0):
        if self.state != "running":
            raise RuntimeError(
                f"cannot flush: the producer is {self.state} with "
                f"{self.pending.qsize()} changelog record(s) unsent"
            )
        self.message_sent.clear()
        with suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.message_sent.wait(), timeout=0.1)


_commit = TransactionManager.commit


async def _commit_after_flush(
    self: TransactionManager, offsets: Any, start_new_transaction: bool = True
) -> bool:
    await self.app.producer.buffer.flush()
    return await _commit(self, offsets, start_new_transaction=start_new_transaction)


def apply() -> None:
    """Install the workarounds (once per process)."""
    global _applied
    if _applied:
        return
    ProducerBuffer._send_pending = _send_pending  # type: ignore[method-assign]
    ProducerBuffer.flush = _flush  # type: ignore[method-assign]
    TransactionManager.commit = _commit_after_flush  # type: ignore[method-assign]
    _applied = True
