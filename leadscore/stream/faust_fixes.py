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

   Fix: ``flush()`` waits until every record queued *before it was called* has
   been handed to the client (records are numbered as they are queued), and the
   exactly_once commit flushes first. Waiting for an empty queue instead, as a
   first version did, can starve while table writes keep arriving: a commit
   waited 240 s with the worker idle in one fault-tier run.

2. **A record skipped during a rebalance counts as processed.** When a
   rebalance starts Faust suspends flow, and a stream then *skips* every record
   it takes from its buffer (and every record fetched in an older generation),
   but still acks it. The consumer has already dropped the partition's ack
   bookkeeping at that point, so the ack lands in the next generation's, where
   it marks an offset done that no agent processed. Once the records before it
   are re-processed, the commit runs through it while its re-fetched copy may
   still be unprocessed; a SIGKILL in that window loses the event (seen: one
   page view missing from a lead after 3 kills, about one run in five, and once
   a record applied after records 470 offsets later).

   Fix: an ack that arrives while flow is suspended, or for a record of an older
   generation, releases the record but does not mark its offset committable.
   Every such offset is re-fetched from the committed offset after the
   rebalance and processed then (at most a repeat, which the history table
   recognises).

3. **A table write can reach Kafka before the outputs it follows.** The agent
   sends its output records (actions, score changes, lead-state) and then
   writes its tables; both are sent asynchronously, to different partitions, so
   a SIGKILL can land after an event's changelog records were delivered and
   before its outputs were. The restarted worker rebuilds its state from the
   changelog, finds the re-delivered event already applied, and never sends
   its outputs (seen: 2 threshold actions lost in 8,000 events with 3 kills,
   and a lead whose last lead-state record was one event short).

   Fix: the agent registers every output send with ``OUTPUTS``, and the buffer
   hands a changelog record to the client only once every output sent before
   the record was queued has been acknowledged by the broker. After a crash,
   the changelog then holds only events whose outputs were all published.

4. **A jump in fetched offsets counts the skipped offsets as processed.** When
   the next record Faust reads from a partition is more than one offset past
   the last it read, it records the offsets in between as a "gap" and later
   adds them to the acked offsets, as if processed. That is meant for offsets
   that hold no record (transaction markers, compacted records). But after
   every assignment Faust seeks to the committed offset and sets its "last
   read" offset to it only once the seek returns, while the fetcher is already
   delivering records: the next record then looks like a jump over the records
   just read (seen: records 523..532 read, then "last read" reset to 522, then
   523..532 registered as a gap). Those offsets, processed or still queued,
   are counted as done: a commit can pass queued ones, which a SIGKILL then
   loses, and processed ones are in the acked list twice, which splits
   Faust's commit runs so the commit crawls one offset per commit interval
   (seen: an idle worker with about 2,000 processed records uncommitted and
   581 offsets listed twice).

   Fix: no gap is recorded; a jump is logged. Offsets with no record behind
   them are then not committable, so an events topic written by transactional
   producers commits slowly (a commit stops at each transaction marker); the
   stuck-commit warning (``stuck_commits``) shows it.

5. **An exception in an agent commits the record it failed on.** See
   ``leadscore.stream.app.stop_unprocessed``; that one is handled in the agent.

6. **Under exactly_once, outputs were sent outside any transaction.** Faust
   picks a record's transaction by the partition its key hashes to, which it
   looks up in the *consumer's* metadata. The consumer knows only the topics it
   reads; for an output topic (actions, score changes, lead state, the DLQ) the
   lookup gives nothing, and Faust then sends the record with its plain,
   non-transactional producer: visible at once, never rolled back. The table
   writes, on the other hand, went into the transactions, which a SIGKILL
   aborted; a restarted worker found the events unapplied and published their
   outputs again (seen: the first records of each partition published once per
   worker, 4 times, and 2,867 score changes repeated in 8,000 events with 3
   kills, read_committed).

   Fix: a record sent while an agent processes an event, without an explicit
   partition, goes into the transaction of that event's partition (as in Kafka
   Streams, one transaction per input partition whatever the output topic),
   and the producer picks its partition by key. Records with an explicit
   partition (table writes) keep Faust's choice, which is the same transaction.

7. **Records at the head of a partition are dropped after a seek, and the
   commit may pass them.** Faust delivers a fetched record only if its offset
   is at least the partition's "last read" offset. After an assignment it seeks
   to the committed offset, but records of a batch fetched before the seek are
   still being delivered and move "last read" past the records the seek
   fetches again, which are then dropped as already read (seen: committed 6,
   every offset from 10 on processed, 6..9 never). Faust's commit then either
   stalls (a hole of two or more) or, for a hole of one record, commits past
   it, and that event is lost (most likely what lost one event, never
   processed yet committed past, in one run of the full-disk scenario).

   Fix: a commit never passes an offset that was not processed
   (``_new_offset`` refuses a hole at the head), and ``heal_head_holes``, run
   every 30 s, seeks a partition whose head hole has stayed for a whole
   interval back to its committed offset, so the dropped records are read
   again (the records after them come again too, and are recognised as
   applied). Fix 8 removes the cause; this one stays as the safety net.

8. **A seek does not take effect on records already fetched.** The cause of
   fix 7. Faust's seek to the committed offsets (``perform_seek``) awaits the
   committed offset of one partition after another while the fetcher keeps
   fetching and delivering, and only then resets "last read"; records fetched
   before the seek, still in the batch being delivered, then come after it
   (seen in one worker log: offsets 545..1036 of each partition delivered
   during the seek, then 1037 from the old batch right after it, the 1,500
   records the seek fetched again dropped as already read, and one
   partition's record 1037 never processed, found by fix 7's healer 60 s
   later). Processed out of order, the records gave different stage-change
   actions than an in-order run.

   Fix: fetching, seeking and delivering a record take turns (one lock per
   consumer): a seek waits for the record being delivered and for a fetch in
   flight, and no fetch starts during a seek. Every seek of a partition is
   counted, and a record fetched before its partition's latest seek is
   discarded instead of delivered; the seek reads it again, in order. A
   revocation stops Faust's flow first, which interrupts a delivery waiting
   on a full stream buffer, so the lock cannot wait on the agents.

9. **Under exactly_once, recovery could not see the changelog's end.** Faust
   takes a changelog partition's end (highwater) from the read_committed
   consumer's *last stable offset*, which the client knows only from a fetch
   response; right after an assignment none has come yet, so every highwater
   read as -1. A worker whose store held changelog offsets then crashed with
   ``ConsistencyError: persisted offset ... higher than ... highwater (372 >
   -1)`` (seen each time the two-worker scenario ran under exactly_once), and
   one with an empty store would have found nothing to restore.

   Fix: the highwaters come from the broker (a ListOffsets request, which for
   a read_committed consumer answers the last stable offset), as they already
   do under at_least_once.

10. **A revocation committed nothing, and under exactly_once left the
    transaction open.** Faust drops a revoked partition's ack bookkeeping
    *before* it waits for the events in progress and commits, so that commit
    has no offsets: the events processed since the last commit are processed
    again by the next owner (at_least_once repeats). Under exactly_once the
    partition's transaction was not committed either; a worker that got the
    partition back went on in the same open transaction, while its recovery
    rolled its tables back to the committed changelog, so it processed those
    events again and committed both copies of their outputs (seen: 292 score
    changes and 12 actions published twice in the two-worker scenario).

    Fix: before Faust revokes, the worker stops fetching, lets the events in
    progress finish (their acks count, although flow is suspended: fix 2 lets
    through a record a stream took for processing while this runs) and
    commits, which under exactly_once commits and ends each partition's
    transaction with its offsets, as Kafka Streams does on revocation.

11. **Under exactly_once, a commit could take an event's outputs without its
    offset.** Faust's commit runs beside the agent: it takes the acked offsets,
    then commits one partition's transaction after another, while the agent
    goes on processing events and sending their outputs into those same
    transactions. Their offsets wait for the next commit; a crash before it
    publishes their outputs and processes them again (seen: 21 score changes
    and 1 action published twice, all processed in the 20 ms before a commit
    that a SIGKILL followed).

    Fix: under exactly_once a commit waits for the event in progress to be
    acknowledged, and no event starts until the commit is done
    (``BETWEEN_EVENTS``, entered by the agent for each event and left by its
    ack), so a transaction holds whole events, each with its offset.

12. **Faust's compiled stream iterator acknowledges records itself.** Its
    Cython ``StreamIterator`` inlines ``Message.ack`` and ``Consumer.ack``
    instead of calling them, so a patched ``Consumer.ack`` never saw a
    record a stream acknowledged: fix 2 was not in effect in the worker (only
    in its unit test, which calls ``ack``), and fix 11's gate waited forever
    for acks that bypassed it (seen: an exactly_once worker that never
    committed, with 2,587 records acknowledged but never let out of the
    gate). Fix: the worker uses Faust's pure-Python stream iterator, which
    acknowledges through ``Consumer.ack`` (as with ``NO_CYTHON=1``).
13. **Resuming flow control dropped records waiting in the stream buffers.**
    Faust's recovery ends by resuming the event partitions, seeking them to
    their committed offsets and then calling ``app.flow_control.resume()``,
    which clears every stream buffer (mode's ``FlowControlEvent.resume``).
    But flow is already running at that point (recovery resumed it to read
    the changelogs), so the records fetched after the seek and buffered for
    the agents are current: they were dropped, never processed or acked, with
    the fetch position already past them (seen: a worker starting with no
    committed offset processed partition 2 from offset 1; offset 0 was never
    processed, and the lead's stage path changed; 2 of 24 SIGKILL runs).

    Fix: resuming flow that is already running leaves the buffers alone.
    Resuming suspended flow still clears them, as before: nothing can enter a
    buffer while flow is suspended, so that clears only what a revocation
    left, of a generation that is over.

14. **Without a committed offset, a commit could pass an unprocessed head.**
    Fix 7's guard compares the first processed offset with the committed one;
    a partition that has none (a new group, or offsets expired) had no guard,
    and Faust's ``_new_offset`` then commits the end of the first run of
    processed offsets even when records before it were never processed (the
    record fix 13 dropped would have been lost for good had its worker lived
    to commit). Fix: when there is no committed offset the guard compares
    with the first offset delivered to the agents since the assignment (or
    the last seek of that partition), and the healer seeks back to it.

15. **Without a committed offset, "seek back to the committed offset" did not
    seek.** Faust relies on that seek to read again what it let go unprocessed:
    records skipped in a rebalance (fix 2), a batch fetched while flow was
    stopped (dropped with "seek back to committed offsets"), records fetched
    before a seek (fix 8). The client seeks only a partition whose committed
    offset is above 0, so for a partition with none the position stayed past
    those records and they were never processed (seen: a worker starting with
    no committed offset began each partition at the records produced the
    moment its fetcher started, about 500 records in, in 1 of 14 SIGKILL runs
    with fix 13). Fix: an input partition without a committed offset is
    sought to its first offset, as the consumer's ``earliest`` reset would
    start it; the records read again are recognised as applied.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager, suppress
from typing import Any

import faust.streams
from faust import current_event
from faust.transport.consumer import Consumer, ThreadDelegateConsumer, TransactionManager
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.producer import ProducerBuffer
from faust.types.tuples import Message, ack_lock
from mode.utils.futures import notify
from mode.utils.queues import FlowControlEvent

log = logging.getLogger(__name__)


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
                raise RuntimeError(
                    "an output record was not delivered, so the table writes after it "
                    f"are held back: {future.exception()!r}"
                )


def _delivered(future: asyncio.Future[Any]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


#: The process's output fence (one Faust app per worker process).
OUTPUTS = OutputFence()


class EventGate:
    """Lets a commit happen only between events (fix 11)."""

    def __init__(self) -> None:
        self._busy: set[int] = set()  # ids of the messages being processed
        self._idle = asyncio.Event()
        self._idle.set()
        self._open = asyncio.Event()
        self._open.set()
        self._closers = 0

    async def enter(self, message: Message) -> None:
        """Before processing ``message``: wait while a commit is under way."""
        await self._open.wait()
        self._busy.add(id(message))
        self._idle.clear()

    def leave(self, message: Message) -> None:
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


#: The process's event gate.
BETWEEN_EVENTS = EventGate()

_QUEUED = "_leadscore_queued"
_MARKS = "_leadscore_marks"
_HANDED = "_leadscore_handed"
_applied = False

_faust_put = ProducerBuffer.put
_faust_send_pending = ProducerBuffer._send_pending
_faust_flush = ProducerBuffer.flush
_faust_commit = TransactionManager.commit
_faust_ack = Consumer.ack
_faust_transaction_send = TransactionManager.send
_faust_new_offset = Consumer._new_offset
_faust_fetch = ThreadDelegateConsumer._getmany
_faust_getmany = Consumer.getmany
_faust_perform_seek = Consumer.perform_seek
_faust_seek_to_committed = ThreadDelegateConsumer.seek_to_committed
_faust_seek = Consumer.seek
_faust_on_partitions_revoked = Consumer.on_partitions_revoked
_faust_commit_tps = Consumer._commit_tps
_mode_resume = FlowControlEvent.resume


def _marks(buffer: ProducerBuffer) -> deque[int]:
    marks: deque[int] | None = getattr(buffer, _MARKS, None)
    if marks is None:
        marks = deque()
        setattr(buffer, _MARKS, marks)
    return marks


def _threaded(buffer: ProducerBuffer) -> bool:
    # A threaded producer takes records from its own queue, not through _send_pending.
    return buffer.app is not None and bool(buffer.app.conf.producer_threaded)


def _put(self: ProducerBuffer, fut: Any) -> None:
    if not _threaded(self):
        setattr(self, _QUEUED, getattr(self, _QUEUED, 0) + 1)
        _marks(self).append(OUTPUTS.mark())
    _faust_put(self, fut)


async def _send_pending(self: ProducerBuffer, fut: Any) -> None:
    # One task takes records off the FIFO queue and calls this for each in turn,
    # so the marks line up with the records, and the count of records handed over
    # is also the position in the queue.
    await OUTPUTS.wait(_marks(self).popleft())
    await _faust_send_pending(self, fut)
    setattr(self, _HANDED, getattr(self, _HANDED, 0) + 1)


async def _flush(self: ProducerBuffer) -> None:
    """Return once every record queued before this call is with the Kafka client."""
    if _threaded(self):
        return await _faust_flush(self)
    target = getattr(self, _QUEUED, 0)
    while getattr(self, _HANDED, 0) < target:
        if self.state != "running":
            raise RuntimeError(
                f"cannot flush: the producer is {self.state} with "
                f"{target - getattr(self, _HANDED, 0)} changelog record(s) unsent"
            )
        self.message_sent.clear()
        with suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.message_sent.wait(), timeout=0.1)


async def _commit_after_flush(
    self: TransactionManager, offsets: Any, start_new_transaction: bool = True
) -> bool:
    await self.app.producer.buffer.flush()
    return await _faust_commit(self, offsets, start_new_transaction=start_new_transaction)


async def _send_in_event_transaction(
    self: TransactionManager,
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
        return await _faust_transaction_send(self, topic, key, value, partition, timestamp, headers)
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


def _head_hole(consumer: Any, tp: Any) -> tuple[int, int] | None:
    """(committed offset, lowest acked offset) when records after the committed
    offset were processed but the record at it was not (fix 7), else None.

    Without a committed offset, the first offset delivered since the assignment
    or the partition's last seek stands in for it (fix 14)."""
    acked = consumer._acked.get(tp)
    committed = consumer._committed_offset.get(tp)
    if committed is None:
        committed = _seeks(consumer).first.get(tp)
    if acked and committed is not None:
        first = min(acked)
        if first > committed:
            return committed, first
    return None


def _new_offset(self: Consumer, tp: Any) -> int | None:
    if _head_hole(self, tp) is not None:
        return None  # the record at the committed offset was not processed
    result: int | None = _faust_new_offset(self, tp)
    return result


async def heal_head_holes(consumer: Any, seen: dict[Any, tuple[int, int]]) -> list[str]:
    """Seek partitions whose unprocessed head (see fix 7) outlasted the previous call.

    ``seen`` maps a partition to the (committed, first acked) pair found by the
    previous call, and is updated. Returns a line per partition sought.
    """
    healed = []
    holes = {tp: hole for tp in list(consumer._acked) if (hole := _head_hole(consumer, tp))}
    for tp, hole in holes.items():
        if seen.get(tp) == hole and tp in consumer.assignment():
            await consumer.seek(tp, hole[0])
            healed.append(
                f"{tp.topic}[{tp.partition}] offsets {hole[0]}..{hole[1] - 1} were never "
                f"processed though {hole[1]} was: read again from {hole[0]}"
            )
    seen.clear()
    seen.update(holes)
    return healed


async def _add_gap(self: Consumer, tp: Any, offset_from: int, offset_to: int) -> None:
    log.warning(
        "offsets %d..%d of %s[%d] were not read before offset %d; they are not counted "
        "as processed",
        offset_from,
        offset_to - 1,
        tp.topic,
        tp.partition,
        offset_to,
    )


def _ack(self: Consumer, message: Message) -> bool:
    BETWEEN_EVENTS.leave(message)
    app = self.app
    if message.generation_id == app.consumer_generation_id and (
        app.flow_control.is_active() or (message.tracked and _revoking(self))
    ):
        return bool(_faust_ack(self, message))
    with ack_lock:
        if message.acked:
            return False
        message.acked = True
        self._unacked_messages.discard(message)
        notify(self._waiting_for_ack)
    log.warning(
        "record %s[%d]@%d released during a rebalance without being marked done",
        message.topic,
        message.partition,
        message.offset,
    )
    return False


class _Seeks:
    """A consumer's seek bookkeeping for fix 8."""

    def __init__(self) -> None:
        self.turn = asyncio.Lock()  # fetch, seek and the delivery of one record
        self.count: Counter[Any] = Counter()  # seeks per partition
        self.at_fetch: dict[Any, int] = {}  # ``count`` when the batch in delivery was fetched
        self.first: dict[Any, int] = {}  # first offset delivered since assignment or seek


def _seeks(consumer: Any) -> _Seeks:
    seeks: _Seeks | None = consumer.__dict__.get("_leadscore_seeks")
    if seeks is None:
        seeks = consumer.__dict__["_leadscore_seeks"] = _Seeks()
    return seeks


async def _fetch(
    self: ThreadDelegateConsumer,
    active_partitions: Any,
    timeout: float,  # noqa: ASYNC109 (Faust's signature)
) -> Any:
    seeks = _seeks(self)
    async with seeks.turn:
        records = await _faust_fetch(self, active_partitions, timeout)
        seeks.at_fetch = dict(seeks.count)
    return records


async def _getmany(
    self: Consumer,
    timeout: float,  # noqa: ASYNC109 (Faust's signature)
) -> AsyncIterator[tuple[Any, Message]]:
    seeks = _seeks(self)
    discarded: Counter[Any] = Counter()
    try:
        async for tp, message in _faust_getmany(self, timeout):
            async with seeks.turn:  # held while the drain loop delivers this record
                if seeks.count[tp] != seeks.at_fetch.get(tp, 0):
                    discarded[tp] += 1
                    continue
                if tp not in seeks.first and self.app.topics.acks_enabled_for(tp.topic):
                    seeks.first[tp] = message.offset
                    log.info(
                        "first record of %s[%d] since the assignment or seek: offset %d "
                        "(committed offset %s)",
                        tp.topic,
                        tp.partition,
                        message.offset,
                        self._committed_offset.get(tp),
                    )
                yield tp, message
    finally:
        for tp, n in discarded.items():
            log.info(
                "%d record(s) of %s[%d] fetched before a seek were discarded; the seek "
                "reads them again",
                n,
                tp.topic,
                tp.partition,
            )


async def _perform_seek(self: Consumer) -> None:
    async with _seeks(self).turn:
        await _faust_perform_seek(self)  # calls seek_to_committed


async def _seek_to_committed(self: ThreadDelegateConsumer) -> Any:
    committed = await _faust_seek_to_committed(self)
    seeks = _seeks(self)
    # The client seeks only a partition with a committed offset above 0.
    seeks.count.update(tp for tp, offset in committed.items() if offset and offset > 0)
    # An input partition with none is read from its start again (fix 15).
    unread = [
        tp
        for tp, offset in committed.items()
        if not offset and self.app.topics.acks_enabled_for(tp.topic)
    ]
    if unread:
        starts = await self.earliest_offsets(*unread)
        for tp in unread:
            self._thread.seek(tp, starts[tp])  # not self.seek: this runs under ``turn``
            seeks.count[tp] += 1
            seeks.first.pop(tp, None)
    return committed


async def _seek(self: Consumer, partition: Any, offset: int) -> None:
    seeks = _seeks(self)
    async with seeks.turn:
        seeks.count[partition] += 1
        seeks.first.pop(partition, None)
        await _faust_seek(self, partition, offset)


async def _highwaters(self: AIOKafkaConsumerThread, partitions: Any) -> Any:
    return await self._ensure_consumer().end_offsets(partitions)


def _revoking(consumer: Any) -> bool:
    return bool(consumer.__dict__.get("_leadscore_revoking"))


async def _on_partitions_revoked(self: Consumer, revoked: Any) -> None:
    if self.assignment():
        app = self.app
        self.stop_flow()
        app.flow_control.suspend()
        app.flow_control.clear()  # buffered records, not taken by a stream, are read again
        self.__dict__["_leadscore_revoking"] = True
        try:
            await self.wait_empty()  # ends with a commit (and ends the transactions)
        finally:
            self.__dict__["_leadscore_revoking"] = False
    _seeks(self).first.clear()
    await _faust_on_partitions_revoked(self, revoked)


def _resume(self: FlowControlEvent) -> None:
    if self.is_active():
        return  # the buffers hold current records (fix 13)
    _mode_resume(self)


async def _commit_tps(self: Consumer, tps: Any, start_new_transaction: bool) -> bool:
    if not self.in_transaction:
        return bool(await _faust_commit_tps(self, tps, start_new_transaction))
    async with BETWEEN_EVENTS.closed():
        return bool(await _faust_commit_tps(self, tps, start_new_transaction))


def apply() -> None:
    """Install the workarounds (once per process)."""
    global _applied
    if _applied:
        return
    faust.streams._CStreamIterator = None  # type: ignore[attr-defined]  # fix 12
    ProducerBuffer.put = _put  # type: ignore[method-assign]
    ProducerBuffer._send_pending = _send_pending  # type: ignore[method-assign]
    ProducerBuffer.flush = _flush  # type: ignore[method-assign]
    TransactionManager.commit = _commit_after_flush  # type: ignore[method-assign]
    TransactionManager.send = _send_in_event_transaction  # type: ignore[method-assign]
    Consumer.ack = _ack  # type: ignore[method-assign]
    Consumer._add_gap = _add_gap  # type: ignore[method-assign]
    Consumer._new_offset = _new_offset  # type: ignore[method-assign]
    ThreadDelegateConsumer._getmany = _fetch  # type: ignore[method-assign]
    Consumer.getmany = _getmany  # type: ignore[method-assign]
    Consumer.perform_seek = _perform_seek  # type: ignore[method-assign]
    ThreadDelegateConsumer.seek_to_committed = _seek_to_committed  # type: ignore[method-assign]
    Consumer.seek = _seek  # type: ignore[method-assign]
    AIOKafkaConsumerThread._highwaters = _highwaters  # type: ignore[method-assign]
    Consumer.on_partitions_revoked = _on_partitions_revoked  # type: ignore[method-assign]
    Consumer._commit_tps = _commit_tps  # type: ignore[method-assign]
    FlowControlEvent.resume = _resume  # type: ignore[method-assign]
    _applied = True


def stuck_commits(consumer: Any, last: dict[Any, int | None]) -> list[str]:
    """Partitions whose records processed by the previous call are still uncommitted.

    Faust commits a partition up to the first hole in its acked offsets, one run
    of consecutive offsets per commit; a hole that never fills, or repeated
    offsets (which split the runs), leave processed records uncommitted or make
    the commit crawl. Each line shows Faust's bookkeeping for one such partition.
    ``last`` holds the highest acked offset per partition seen by the previous
    call, and is updated.
    """
    lines = []
    for tp, acked in consumer._acked.items():
        committed = consumer._committed_offset.get(tp)
        waiting = last.get(tp)
        last[tp] = max(acked) if acked else None
        if waiting is None or not acked or (committed is not None and committed > waiting):
            continue
        offsets = sorted(acked)
        holes = [(a + 1, b - 1) for a, b in itertools.pairwise(offsets) if b - a > 1]
        gaps = sorted((iv.begin, iv.end - 1) for iv in consumer._gap.get(tp, ()))
        lines.append(
            f"{tp.topic}[{tp.partition}] committed={committed} "
            f"read={consumer._read_offset.get(tp)} acked={len(offsets)} "
            f"({offsets[0]}..{offsets[-1]}, {len(offsets) - len(set(offsets))} repeated) "
            f"holes={holes[:5]} gaps={gaps[:5]}"
        )
    return lines
