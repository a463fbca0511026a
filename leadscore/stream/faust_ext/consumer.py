"""The consuming side: an offset is committed only once its record was processed.

Each customisation is a method of ``Consumer`` (the aiokafka driver's consumer)
or ``ConsumerThread`` (its client thread), found by the fault tier
(tests/faults), with the symptom it caused there and the upstream report it
answers. The unit tests are in tests/unit/test_faust_ext.py.

1. **A record skipped during a rebalance counted as processed** (``ack``;
   upstream #221, #241). When a rebalance starts Faust suspends flow, and a
   stream then *skips* every record it takes from its buffer (and every record
   of an older generation) but still acks it, into the next generation's
   bookkeeping, where it marks an offset done that no agent processed; a SIGKILL
   then lost the event (one page view missing after 3 kills, one run in five).
   An ack while flow is suspended, or of an older generation, releases the
   record without marking its offset committable; the offset is re-fetched from
   the committed offset after the rebalance.
2. **A jump in fetched offsets counted the skipped offsets as processed**
   (``_add_gap``; upstream #312, #606). After every assignment Faust seeks to
   the committed offset and resets its "last read" offset only once the seek
   returns, while the fetcher is already delivering; the next record looked
   like a jump over the records just read, and those were counted done (a
   commit passed queued ones; an idle worker had 2,000 processed records
   uncommitted and 581 offsets listed twice). Since 4, a seek and its reset of
   "last read" hold the turn no delivery can take, and a record fetched before
   its partition's latest seek is discarded: a jump between two records the
   drain loop delivers is then the fetcher passing offsets a read_committed
   consumer does not read (transaction markers, aborted records; compaction),
   and those are recorded as done, without Faust's floor of the committed
   offset plus one, so a marker at the committed offset is covered too
   (``head_hole`` takes recorded gaps into account). Under exactly_once an
   input the worker writes in transactions (the account updates, the hand-offs)
   holds a marker after every transaction that wrote it: left as holes, each
   held its partition's commits for a heal interval (30 s), and the accounts'
   commits fell behind by minutes.
3. **A commit could pass an unprocessed record at the head** (``_new_offset``,
   ``heal_head_holes``; upstream #312). Records of a batch fetched before a seek
   moved "last read" past the records the seek fetched again, which were
   dropped as already read (committed 6, every offset from 10 processed, 6..9
   never); for a hole of one record Faust committed past it. A commit never
   passes an offset that was not processed, and ``heal_head_holes`` seeks a
   partition whose head hole stayed for a whole interval back to its committed
   offset. Without a committed offset (a new group) the first offset delivered
   since the assignment or last seek stands in for it. When the latest seek went
   to the committed offset and the first record delivered since is later, the
   offsets between hold no record a read_committed consumer reads (aborted
   transactions, markers: the hand-off topic under exactly_once, where a killed
   worker's transaction left 3 such offsets at the head and the partition never
   committed again), so they are no hole.
4. **A seek did not take effect on records already fetched** (``_getmany``,
   ``getmany``, ``perform_seek``, ``seek``; upstream #221, #216). The cause of 3:
   ``perform_seek`` awaits one partition's committed offset after another while
   the fetcher keeps delivering (offsets 545..1036 delivered during a seek, then
   1037 from the old batch, the 1,500 records the seek fetched again dropped).
   Fetching, seeking and delivering a record take turns (one lock per
   consumer); every seek of a partition is counted, and a record fetched before
   its partition's latest seek is discarded: the seek reads it again, in order.
5. **Without a committed offset, "seek back to the committed offset" did not
   seek** (``seek_to_committed``). The client seeks only a partition whose
   committed offset is above 0, so what Faust let go unprocessed there was never
   read again (a new group began each partition ~500 records in, 1 of 14 SIGKILL
   runs). An input partition without one is sought to its first offset.
6. **A revocation committed nothing, and under exactly_once left the
   transaction open** (``on_partitions_revoked``; upstream #502, robinhood/faust
   #681). Faust drops a revoked partition's ack bookkeeping *before* it waits
   for the events in progress and commits, so that commit had no offsets; under
   exactly_once a worker that got the partition back went on in the same open
   transaction (292 score changes published twice in the two-worker scenario).
   Before Faust revokes, the worker stops fetching, lets the events in progress
   finish and commits, as Kafka Streams does on revocation.
7. **Under exactly_once, a commit could take an event's outputs without its
   offset** (``_commit_tps``; upstream #517). The commit runs beside the agent;
   outputs of events processed while it committed went into those transactions
   with their offsets left for the next one (21 score changes published twice).
   The commit waits for the event in progress and no event starts until it is
   done (``ordering.EventGate``).
8. **Under exactly_once, recovery could not see the changelog's end**
   (``ConsumerThread._highwaters``; upstream #158, #47). Faust took a changelog
   partition's end from the read_committed consumer's last stable offset, which
   the client knows only after a fetch; right after an assignment every
   highwater read as -1 (``ConsistencyError: persisted offset ... higher than
   ... highwater (372 > -1)`` each time the two-worker scenario ran). The
   highwaters come from the broker (ListOffsets answers the last stable offset
   for a read_committed consumer), as under at_least_once.
9. **Every record was handed to the streams through four new tasks**
   (``_drain_messages``; cost, not correctness). Faust's drain loop delivers
   each record with ``wait_first(callback(message), suspend_flow.wait())``,
   which wraps both and the service's stopped and crashed events in tasks and
   waits on them: 36 of the 54 us per record the consume path cost. Delivery
   waits only when flow control is suspended, the producer buffer is over its
   limit or a stream's queue is full; when none holds, the loop awaits the
   callback itself, and otherwise waits as Faust does, so that a rebalance
   still releases a delivery that cannot finish (the turn lock of 4 is held
   while delivering). Faust's loop is kept otherwise (yield every 100 records,
   the read-offset bookkeeping, ``_add_gap``, ``commit_every``).
10. **Under at_least_once, a replay could take an anonymous id's event before the
   hand-off that had merged it** (``seek_to_committed``, ``_getmany``,
   ``getmany``, ``catch_up_by_position``; found by
   tests/unit/test_crashes.py, not by Faust). A batch's outputs land before its
   state, so after a crash the hand-off topic can hold what a lost batch sent
   (an ``absorb``'s lead already taken by the survivor) while the id's own
   partition is back before it. Replayed in another order across topics, the
   id's events were scored on its own lead again and its second hand-off was a
   duplicate merge at the survivor: those events were lost. After every
   assignment, a partition's other inputs (events, privacy requests, ticks) are
   not fetched until its hand-off records up to the end offset found at the
   assignment have been delivered, so a replay takes them in the order the
   lost run did. The unit model's law fails without it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as FaustConsumer
from faust.types.tuples import Message, ack_lock
from mode.utils.futures import notify

from leadscore.stream.faust_ext.ordering import gate_of

log = logging.getLogger(__name__)


class ConsumerThread(AIOKafkaConsumerThread):
    """The aiokafka client thread, with highwaters from the broker (8)."""

    async def _highwaters(self, partitions: Any) -> Any:
        return await self._ensure_consumer().end_offsets(partitions)


@dataclass(frozen=True)
class HandoffsFirst:
    """(10) The hand-off topic, and the inputs held back while it catches up."""

    topic: str
    held_back: frozenset[str]


def handoffs_first_of(app: Any) -> HandoffsFirst | None:
    """``app``'s hand-offs-first rule, if it has one (a ``faust_ext.app.App`` may)."""
    rule = getattr(app, "handoffs_first", None)
    return rule if isinstance(rule, HandoffsFirst) else None


class Seeks:
    """A consumer's seek bookkeeping (4)."""

    def __init__(self) -> None:
        self.turn = asyncio.Lock()  # fetch, seek and the delivery of one record
        self.count: Counter[Any] = Counter()  # seeks per partition
        self.at_fetch: dict[Any, int] = {}  # ``count`` when the batch in delivery was fetched
        self.first: dict[Any, int] = {}  # first offset delivered since assignment or seek
        self.target: dict[Any, int] = {}  # the offset of each partition's latest seek


class Consumer(FaustConsumer):
    """The aiokafka driver's consumer, which commits only processed offsets."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.seeks = Seeks()
        self.revoking = False
        #: (10) partition -> the hand-off end offset to deliver before its other inputs
        self.catching_up: dict[int, int] = {}
        super().__init__(*args, **kwargs)

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    # 1 and 7: acknowledgements
    def ack(self, message: Message) -> bool:
        gate_of(self.app).leave(message)
        app = self.app
        if message.generation_id == app.consumer_generation_id and (
            app.flow_control.is_active() or (message.tracked and self.revoking)
        ):
            return bool(super().ack(message))
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

    # 2
    async def _add_gap(self, tp: Any, offset_from: int, offset_to: int) -> None:
        """Offsets ``offset_from`` to ``offset_to - 1``, passed by the fetcher between two
        records delivered in one seek epoch (4): nothing there to process."""
        if offset_from < offset_to:
            self._gap[tp].addi(offset_from, offset_to)

    def covered(self, tp: Any, low: int, high: int) -> bool:
        """Whether every offset from ``low`` to ``high - 1`` is a recorded gap (2)."""
        at = low
        for interval in sorted(self._gap.get(tp, ()), key=lambda iv: iv.begin):
            if interval.end <= at:
                continue
            if interval.begin > at:
                return False
            at = interval.end
            if at >= high:
                return True
        return at >= high

    # 3
    def head_hole(self, tp: Any) -> tuple[int, int] | None:
        """(committed offset, lowest acked offset) when records after the committed
        offset were processed but the record at it was not, else None."""
        acked = self._acked.get(tp)
        committed = self._committed_offset.get(tp)
        if committed is None:
            committed = self.seeks.first.get(tp)
        else:
            skipped = self.skipped_head(tp)
            committed = committed if skipped is None else skipped[1]
        if acked and committed is not None:
            first = min(acked)
            if first > committed and not self.covered(tp, committed, first):
                return committed, first
        return None

    def skipped_head(self, tp: Any) -> tuple[int, int] | None:
        """(committed offset, first offset delivered) when the latest seek went to the
        committed offset and the first record delivered since came later: the offsets
        between hold nothing a read_committed consumer reads (an aborted transaction's
        records, transaction markers: an input written in transactions, the hand-off
        topic under exactly_once)."""
        committed = self._committed_offset.get(tp)
        first = self.seeks.first.get(tp)
        if committed is None or first is None or first <= committed:
            return None
        return (committed, first) if self.seeks.target.get(tp) == committed else None

    def _new_offset(self, tp: Any) -> int | None:
        if self.head_hole(tp) is not None:
            return None  # the record at the committed offset was not processed
        skipped = self.skipped_head(tp)
        if skipped is not None and self._acked.get(tp):
            # Faust counts a gap it is given as processed (its own gaps are not
            # recorded, see 2); once, until the commit moves the committed offset.
            self._gap[tp].addi(*skipped)
            del self.seeks.target[tp]
        result: int | None = super()._new_offset(tp)
        return result

    # 4 and 10
    async def _getmany(
        self,
        active_partitions: Any,
        timeout: float,  # noqa: ASYNC109 (Faust's signature)
    ) -> Any:
        catching_up, rule = self.catching_up, handoffs_first_of(self.app)
        if catching_up and active_partitions and rule is not None:
            active_partitions = {
                tp
                for tp in active_partitions
                if tp.partition not in catching_up or tp.topic not in rule.held_back
            }
            if not active_partitions:  # the client would read every partition
                await asyncio.sleep(min(timeout, 0.1))
                return {}
        async with self.seeks.turn:
            records = await super()._getmany(active_partitions, timeout)
            self.seeks.at_fetch = dict(self.seeks.count)
        return records

    async def getmany(
        self,
        timeout: float,  # noqa: ASYNC109 (Faust's signature)
    ) -> AsyncIterator[tuple[Any, Message]]:
        seeks = self.seeks
        rule = handoffs_first_of(self.app)
        handoffs = rule.topic if rule is not None else None
        discarded: Counter[Any] = Counter()
        try:
            async for tp, message in super().getmany(timeout):
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
                    if self.catching_up and tp.topic == handoffs:
                        self.caught_up(tp.partition, message.offset + 1)
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

    # 10
    def caught_up(self, partition: int, position: int) -> None:
        """The hand-off records of ``partition`` before ``position`` were delivered."""
        target = self.catching_up.get(partition)
        if target is not None and position >= target:
            del self.catching_up[partition]
            log.info(
                "partition %d: hand-off records up to offset %d delivered; its other "
                "inputs are read from now on",
                partition,
                target - 1,
            )

    async def catch_up_by_position(self) -> None:
        """Check the fetch position of hand-off partitions still catching up: offsets
        without a record (transaction markers left by an exactly_once run) are never
        delivered, and the position passes them."""
        rule = handoffs_first_of(self.app)
        for partition in list(self.catching_up):
            tp = next(
                (
                    tp
                    for tp in self.assignment()
                    if rule is not None and (tp.topic, tp.partition) == (rule.topic, partition)
                ),
                None,
            )
            if tp is None:
                del self.catching_up[partition]  # no longer assigned
                continue
            position = await self.position(tp)
            if position is not None:
                self.caught_up(partition, position)

    async def perform_seek(self) -> None:
        async with self.seeks.turn:
            await super().perform_seek()  # calls seek_to_committed

    # 9
    def delivers_without_waiting(self) -> bool:
        """Handing a record to the streams cannot suspend: flow is on, the producer
        buffer is within its limit and every stream queue has room."""
        app = self.app
        if not app.flow_control.is_active() or app.in_recovery:
            return False
        buffer = app.producer.buffer
        if buffer.size > buffer.max_messages:
            return False
        return not any(topic.queue.full() for topic in app.topics)

    async def _drain_messages(self, fetcher: Any) -> None:
        callback = self.callback
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        since_yield = 0
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                self.diag.set_flag(CONSUMER_FETCHING)
                records = self.getmany(timeout=1.0)
                await self.sleep(0)  # getmany may not suspend; let the loop run
                if self.should_stop:
                    continue
                async for tp, message in records:
                    since_yield += 1
                    if since_yield > 100:
                        await asyncio.sleep(0)
                        since_yield = 0
                    offset = message.offset
                    last = read_offset[tp]
                    if last is not None and offset < last:
                        log.debug("record %s[%d]@%d already read", tp.topic, tp.partition, offset)
                        continue
                    if last and offset - last > 1 and acks_enabled_for(message.topic):
                        await self._add_gap(tp, last + 1, offset)
                    if self._commit_every is not None and self._n_acked >= self._commit_every:
                        self._n_acked = 0
                        await self.commit()
                    if self.delivers_without_waiting():
                        await callback(message)
                    else:
                        await self.wait_first(callback(message), self.suspend_flow.wait())
                    read_offset[tp] = offset
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if not self.transport.app.should_stop:
                raise
            log.info("broker stopped the consumer while shutting down")
        except asyncio.CancelledError:
            if not self.transport.app.should_stop:
                raise
        except Exception:
            log.exception("the drain loop failed")
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    # 4 and 5
    async def seek_to_committed(self) -> Any:
        committed = await super().seek_to_committed()
        seeks = self.seeks
        # The client seeks only a partition with a committed offset above 0.
        sought = {tp: offset for tp, offset in committed.items() if offset and offset > 0}
        seeks.count.update(sought)
        seeks.target.update(sought)
        # An input partition with none is read from its start again (5).
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
                seeks.target[tp] = starts[tp]
                seeks.first.pop(tp, None)
        await self.hand_offs_first(committed)
        return committed

    # 10
    async def hand_offs_first(self, committed: Any) -> None:
        """After an assignment, hold back the other inputs of each partition whose
        hand-off records from its committed offset to its end are not yet read."""
        rule = handoffs_first_of(self.app)
        if rule is None:
            return
        tps = [tp for tp in committed if tp.topic == rule.topic]
        if not tps:
            return
        ends = await self.highwaters(*tps)
        starts = await self.earliest_offsets(*tps)
        for tp in tps:
            start = max(committed[tp] or 0, starts.get(tp) or 0)
            end = ends.get(tp)
            self.catching_up.pop(tp.partition, None)
            if end is not None and end > start:
                self.catching_up[tp.partition] = end
                log.info(
                    "partition %d: %d hand-off record(s) from offset %d are read before its "
                    "other inputs (a replay takes them in the order they were taken)",
                    tp.partition,
                    end - start,
                    start,
                )

    async def seek(self, partition: Any, offset: int) -> None:
        async with self.seeks.turn:
            self.seeks.count[partition] += 1
            self.seeks.target[partition] = offset
            self.seeks.first.pop(partition, None)
            await super().seek(partition, offset)

    # 6
    async def on_partitions_revoked(self, revoked: Any) -> None:
        if self.assignment():
            app = self.app
            self.stop_flow()
            app.flow_control.suspend()
            app.flow_control.clear()  # buffered records, not taken by a stream, are read again
            self.revoking = True
            try:
                await self.wait_empty()  # ends with a commit (and ends the transactions)
            finally:
                self.revoking = False
        self.seeks.first.clear()
        await super().on_partitions_revoked(revoked)

    # 7
    async def _commit_tps(self, tps: Any, start_new_transaction: bool) -> bool:
        if not self.in_transaction:
            return bool(await super()._commit_tps(tps, start_new_transaction))
        async with gate_of(self.app).closed():
            return bool(await super()._commit_tps(tps, start_new_transaction))


async def heal_head_holes(consumer: Consumer, seen: dict[Any, tuple[int, int]]) -> list[str]:
    """Seek partitions whose unprocessed head (3) outlasted the previous call.

    ``seen`` maps a partition to the (committed, first acked) pair found by the
    previous call, and is updated. Returns a line per partition sought.
    """
    healed = []
    holes = {tp: hole for tp in list(consumer._acked) if (hole := consumer.head_hole(tp))}
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
