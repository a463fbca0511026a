"""The worker's Faust subclasses (leadscore.stream.faust_ext), on real Faust objects.

Each test reproduces what Faust's own class did, as the module docstrings of
faust_ext describe it; without the subclass's method it fails.
"""

from __future__ import annotations

import asyncio
import sys
import types
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.transport.producer import ProducerBuffer
from faust.types import TP
from faust.types.tuples import ConsumerMessage, Message

from leadscore.config import Settings
from leadscore.errors import ConfigError, OutputNotDelivered, UntestedVersions
from leadscore.scoring import load_rules
from leadscore.stream.app import build_app
from leadscore.stream.faust_ext import App
from leadscore.stream.faust_ext.consumer import HandoffsFirst, heal_head_holes
from leadscore.stream.faust_ext.ordering import OutputFence
from leadscore.stream.faust_ext.streams import in_partition_of
from leadscore.stream.faust_ext.versions import check_versions

EVENTS = TP("events", 0)
NOWHERE = "leadscore://127.0.0.1:1"
RULES = load_rules(Path(__file__).parents[2] / "examples" / "rules.yaml")


@pytest.fixture
def app() -> faust.App:
    app = App("faust-ext-test", broker=NOWHERE)
    app.consumer_generation_id = 5
    app.topics._acking_topics.add(EVENTS.topic)  # what subscribing an agent does
    app.flow_control.resume()
    return app


def fetched(app: faust.App, offset: int, generation: int = 5) -> Message:
    message = ConsumerMessage(
        EVENTS.topic, 0, offset, 0.0, 0, None, b"k", b"v", None, generation_id=generation, tp=EVENTS
    )
    app.consumer._unacked_messages.add(message)
    return message


def test_an_ack_in_the_current_generation_marks_the_offset_done(app: faust.App) -> None:
    assert app.consumer.ack(fetched(app, 10)) is True
    assert list(app.consumer._acked[EVENTS]) == [10]


@pytest.mark.parametrize("why", ["older generation", "flow suspended"])
def test_a_record_skipped_in_a_rebalance_is_released_but_not_done(app: faust.App, why: str) -> None:
    consumer = app.consumer
    consumer._committed_offset[EVENTS] = 10
    if why == "flow suspended":
        app.flow_control.suspend()
        skipped = fetched(app, 11)
    else:
        skipped = fetched(app, 11, generation=4)
    assert consumer.ack(skipped) is False
    assert skipped.acked  # released: a clean stop does not wait for it
    assert skipped not in consumer._unacked_messages
    app.flow_control.resume()
    # The re-fetched offset 10 is processed: the commit must stop there, not run
    # through the skipped 11 (Faust's own ack put 11 in the list, and the commit
    # went to 12 while 11's re-fetched copy was still unprocessed).
    consumer.ack(fetched(app, 10))
    assert consumer._new_offset(EVENTS) == 11


def test_the_fence_waits_for_the_outputs_sent_before_the_mark() -> None:
    asyncio.run(fence_waits_for_the_outputs_sent_before_the_mark())


async def fence_waits_for_the_outputs_sent_before_the_mark() -> None:
    loop = asyncio.get_running_loop()
    fence = OutputFence()
    await fence.wait(fence.mark())  # nothing sent: nothing to wait for
    first, later = loop.create_future(), loop.create_future()
    fence.track(first)
    mark = fence.mark()
    fence.track(later)
    waiting = asyncio.ensure_future(fence.wait(mark))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not waiting.done()
    first.set_result("delivered")
    await waiting  # the later send is still pending, and does not matter
    assert not later.done()
    later.set_result("delivered")
    await fence.wait(fence.mark())  # done, though its done-callback has not run yet


def test_a_failed_output_send_stops_the_table_writes_after_it() -> None:
    asyncio.run(failed_output_send_stops_the_table_writes_after_it())


async def failed_output_send_stops_the_table_writes_after_it() -> None:
    fence = OutputFence()
    failed = asyncio.get_running_loop().create_future()
    fence.track(failed)
    failed.set_exception(ConnectionError("broker gone"))
    await asyncio.sleep(0)
    with pytest.raises(OutputNotDelivered, match="not delivered"):
        await fence.wait(fence.mark())


class Channel:
    """Stands in for a changelog topic: records wait at the 'client' until released."""

    def __init__(self) -> None:
        self.handed: list[int] = []
        self.gate: dict[int, asyncio.Event] = {}

    async def publish_message(self, fut: Any, wait: bool = False) -> None:
        number = fut.message.value
        if number in self.gate:
            await self.gate[number].wait()
        self.handed.append(number)


def record(channel: Channel, number: int) -> Any:
    return SimpleNamespace(message=SimpleNamespace(channel=channel, value=number))


def test_flush_waits_for_records_queued_before_it_and_no_others() -> None:
    asyncio.run(flush_waits_for_records_queued_before_it_and_no_others())


async def flush_waits_for_records_queued_before_it_and_no_others() -> None:
    # made inside the loop: a Faust app made outside binds its services to another one
    buffer = App("faust-ext-buffer", broker=NOWHERE).producer.buffer
    channel = Channel()
    channel.gate[2] = asyncio.Event()
    await buffer.start()
    try:
        for number in (1, 2):
            buffer.put(record(channel, number))
        flushing = asyncio.ensure_future(buffer.flush())
        await asyncio.sleep(0)  # the flush begins
        buffer.put(record(channel, 3))  # queued after the flush began
        for _ in range(20):
            await asyncio.sleep(0)
        assert channel.handed == [1]
        assert not flushing.done()
        channel.gate[2].set()
        channel.gate[3] = asyncio.Event()  # record 3 stays with the client
        await asyncio.wait_for(flushing, timeout=30)
        assert channel.handed == [1, 2]
        channel.gate[3].set()
        await asyncio.wait_for(buffer.flush(), timeout=30)
        assert channel.handed == [1, 2, 3]
    finally:
        for gate in channel.gate.values():
            gate.set()
        await buffer.stop()


def test_a_commit_never_passes_an_unprocessed_record_at_the_head(app: faust.App) -> None:
    consumer = app.consumer
    consumer._committed_offset[EVENTS] = 20
    for offset in (21, 22):  # 20 was dropped, never processed
        consumer.ack(fetched(app, offset))
    assert consumer._new_offset(EVENTS) is None  # Faust's own answer was 23
    consumer.ack(fetched(app, 20))  # read again and processed
    assert consumer._new_offset(EVENTS) == 23


def test_offsets_a_read_from_the_committed_offset_skips_are_no_hole(app: faust.App) -> None:
    """Read again from the committed offset, the first record delivered is later: the
    offsets between are an aborted transaction's or markers (an input written in
    transactions), which a read_committed consumer never reads; the commit moves on."""
    consumer = app.consumer
    consumer._committed_offset[EVENTS] = 111
    consumer.seeks.target[EVENTS] = 111  # the heal (or the assignment) sought there
    consumer.seeks.first[EVENTS] = 114  # and the first record delivered since was 114
    for offset in (114, 115):
        consumer.ack(fetched(app, offset))
    assert consumer.head_hole(EVENTS) is None
    assert consumer._new_offset(EVENTS) == 116
    consumer.ack(fetched(app, 116))
    assert consumer._new_offset(EVENTS) is None  # once: 116 waits for the commit of 116
    consumer._committed_offset[EVENTS] = 116  # the commit landed
    assert consumer._new_offset(EVENTS) == 117

    consumer._committed_offset[EVENTS] = 130
    consumer.seeks.target[EVENTS] = 50  # a seek elsewhere proves nothing about 130..131
    consumer.seeks.first[EVENTS] = 132
    consumer.ack(fetched(app, 132))
    assert consumer.head_hole(EVENTS) == (130, 132)
    assert consumer._new_offset(EVENTS) is None


def test_a_head_hole_that_stays_is_read_again_from_the_committed_offset(app: faust.App) -> None:
    asyncio.run(head_hole_that_stays_is_read_again(app))


async def head_hole_that_stays_is_read_again(app: faust.App) -> None:
    consumer = app.consumer
    consumer._committed_offset[EVENTS] = 6
    for offset in (10, 11):
        consumer.ack(fetched(app, offset))
    sought: list[tuple[TP, int]] = []

    async def seek(tp: TP, offset: int) -> None:
        sought.append((tp, offset))

    consumer.seek = seek  # type: ignore[method-assign]  # a stand-in on this instance only
    consumer.assignment = lambda: {EVENTS}  # type: ignore[method-assign]  # a stand-in on this instance only
    seen: dict[Any, tuple[int, int]] = {}
    assert await heal_head_holes(consumer, seen) == []  # maybe still in flight
    lines = await heal_head_holes(consumer, seen)
    assert sought == [(EVENTS, 6)]
    assert "offsets 6..9" in lines[0]


class PartitionLog:
    """Stands in for the Kafka client thread: one partition of 30 records and a
    fetch position, fetched five records at a time, as aiokafka would."""

    def __init__(
        self,
        committed: int | None,
        position: int = 10,
        end: int = 30,
        markers: frozenset[int] = frozenset(),
    ) -> None:
        self.committed = committed
        self.start = self.position = position  # the log starts where the consumer did
        self.end = end
        self.markers = markers  # offsets read_committed does not deliver (transaction markers)

    async def getmany(
        self,
        active_partitions: Any,
        timeout: float,  # noqa: ASYNC109 (aiokafka's signature)
    ) -> dict[TP, list[Any]]:
        if self.position >= self.end:
            await asyncio.sleep(0.01)
            return {}
        batch = range(self.position, min(self.position + 5, self.end))
        self.position = batch[-1] + 1
        return {EVENTS: [kafka_record(offset) for offset in batch if offset not in self.markers]}

    async def seek_to_committed(self) -> dict[TP, int | None]:
        await asyncio.sleep(0.01)  # the client asks the broker
        if self.committed:  # aiokafka seeks only to a committed offset above 0
            self.position = self.committed
        return {EVENTS: self.committed}

    def seek(self, tp: TP, offset: int) -> None:
        self.position = offset

    async def earliest_offsets(self, *partitions: TP) -> dict[TP, int]:
        return dict.fromkeys(partitions, self.start)

    def assignment(self) -> set[TP]:
        return {EVENTS}

    def highwater(self, tp: TP) -> int:
        return self.end


def kafka_record(offset: int, tp: TP = EVENTS) -> SimpleNamespace:
    return SimpleNamespace(
        topic=tp.topic,
        partition=tp.partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        headers=None,
        key=b"k",
        value=b"v",
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=1,
    )


@pytest.mark.parametrize(
    ("seek", "committed", "expected"),
    [
        ("to the committed offset", 10, [10, 11, 12, *range(10, 30)]),
        ("of one partition", 10, [10, 11, 12, *range(11, 30)]),
        # No committed offset: the client does not seek; consumer (5) reads the partition
        # from its start again (Faust counted on that seek to re-read what it let go).
        ("to the committed offset", None, [10, 11, 12, *range(10, 30)]),
    ],
)
def test_records_fetched_before_a_seek_are_not_delivered_after_it(
    app: faust.App, seek: str, committed: int | None, expected: list[int]
) -> None:
    """consumer (4), on Faust's own drain loop: a seek lands while record 12 of a
    fetched batch 10..14 is being delivered. Delivery must go on from the seek's
    offset, in order; Faust delivered 13 and 14 from the old batch, and then
    dropped the records the seek fetched again as already read."""
    delivered = asyncio.run(deliver_with_a_seek_at_12(app, seek, committed))
    assert delivered == expected


async def deliver_with_a_seek_at_12(app: faust.App, seek: str, committed: int | None) -> list[int]:
    consumer = app.consumer
    consumer._thread = PartitionLog(committed)  # type: ignore[attr-defined]  # the client thread stand-in
    consumer._set_active_tps({EVENTS})  # what an assignment does
    delivered: list[int] = []
    seeking: list[asyncio.Task[None]] = []
    fetcher = SimpleNamespace(_stopped=asyncio.Event())

    async def deliver(message: Message) -> None:
        delivered.append(message.offset)
        if message.offset == 12 and not seeking:
            if seek == "to the committed offset":
                seeking.append(asyncio.ensure_future(consumer.perform_seek()))
            else:
                seeking.append(asyncio.ensure_future(consumer.seek(EVENTS, 11)))
            for _ in range(10):  # the delivery takes a while; the seek starts meanwhile
                await asyncio.sleep(0)
        if message.offset == 29:
            fetcher._stopped.set()

    consumer.callback = deliver
    await asyncio.wait_for(consumer._drain_messages(fetcher), timeout=30)  # type: ignore[arg-type]  # a fetcher stand-in
    await asyncio.wait_for(seeking[0], timeout=30)
    return delivered


def test_a_record_is_handed_to_the_streams_without_new_tasks_when_nothing_can_wait(
    app: faust.App,
) -> None:
    """consumer (9): Faust's drain loop wrapped every delivery in ``wait_first``
    (four new tasks per record) although nothing could make it wait."""
    waits = asyncio.run(drain_all(app, reason=None))
    assert waits == 0


@pytest.mark.parametrize("reason", ["flow suspended", "stream queue full"])
def test_a_delivery_that_has_to_wait_is_released_when_flow_is_suspended(
    app: faust.App, reason: str
) -> None:
    """consumer (9): when a delivery can wait (flow control suspended, a full queue),
    the loop still waits as Faust does, so a rebalance's suspension releases it;
    awaited directly, the drain loop (holding the turn lock of 4) would hang."""
    waits = asyncio.run(drain_all(app, reason=reason))
    assert waits == 20


async def drain_all(app: faust.App, reason: str | None) -> int:
    """Drain records 10..29; returns how many deliveries went through ``wait_first``."""
    consumer = app.consumer
    consumer._thread = PartitionLog(committed=10)  # type: ignore[attr-defined]  # the client thread stand-in
    consumer._set_active_tps({EVENTS})
    fetcher = SimpleNamespace(_stopped=asyncio.Event())
    if reason == "flow suspended":
        app.flow_control.suspend()
    elif reason == "stream queue full":
        topic = app.topic("events-buffered")
        app.topics.add(topic)
        while not topic.queue.full():
            topic.queue.put_nowait(None)
    delivered: list[int] = []
    first_delivered = asyncio.Event()
    waits = 0
    wait_first = consumer.wait_first

    async def counted_wait_first(*coros: Any) -> Any:
        nonlocal waits
        waits += 1
        return await wait_first(*coros)

    async def deliver(message: Message) -> None:
        delivered.append(message.offset)
        first_delivered.set()
        if message.offset == 29:
            fetcher._stopped.set()
        if reason is not None:
            await asyncio.Event().wait()  # a put that never gets room or flow

    async def rebalance() -> None:
        await first_delivered.wait()
        consumer.suspend_flow.set()

    consumer.wait_first = counted_wait_first  # type: ignore[method-assign]  # a stand-in on this instance only
    consumer.callback = deliver
    suspending = asyncio.ensure_future(rebalance())
    await asyncio.wait_for(consumer._drain_messages(fetcher), timeout=30)  # type: ignore[arg-type]  # a fetcher stand-in
    await suspending
    assert delivered == list(range(10, 30))
    return waits


def test_changelog_highwaters_under_exactly_once_come_from_the_broker() -> None:
    """consumer (8): right after an assignment the client has no last stable offset yet
    (None, which Faust's recovery turned into a highwater of -1)."""

    class Client:
        def last_stable_offset(self, tp: TP) -> None:
            return None  # no fetch response yet

        async def end_offsets(self, tps: list[TP]) -> dict[TP, int]:
            return {tp: 373 for tp in tps}  # what ListOffsets answers

    app = App("faust-ext-eos", broker=NOWHERE, processing_guarantee="exactly_once")
    app.in_worker = True  # as under `faust worker`
    thread = app.consumer._thread  # type: ignore[attr-defined]  # the aiokafka driver\'s, not ConsumerT\'s
    thread._consumer = Client()
    assert app.consumer.in_transaction
    assert asyncio.run(thread._highwaters([EVENTS])) == {EVENTS: 373}


def test_a_revocation_commits_what_was_processed_before_the_bookkeeping_goes(
    app: faust.App,
) -> None:
    asyncio.run(revoke_with_an_event_in_progress(app))


async def revoke_with_an_event_in_progress(app: faust.App) -> None:
    """consumer (6): Faust dropped the partition's acks first and then committed
    nothing; the event in progress, finished while flow is suspended, counts."""
    consumer = app.consumer
    consumer._thread = PartitionLog(committed=10)  # type: ignore[attr-defined]  # the client thread stand-in
    consumer._set_active_tps({EVENTS})
    consumer._committed_offset[EVENTS] = 10
    for offset in (10, 11):
        consumer.ack(fetched(app, offset))
    in_progress = fetched(app, 12)
    in_progress.tracked = True  # a stream took it; 13 stays in the buffer
    committed: list[dict[TP, int]] = []

    async def commit(offsets: dict[TP, int]) -> bool:
        committed.append(dict(offsets))
        return True

    async def app_revoked(revoked: set[TP]) -> None:  # Faust's app-level handler
        pass

    consumer._commit = commit  # type: ignore[method-assign]  # a stand-in on this instance only
    consumer._on_partitions_revoked = app_revoked
    revoking = asyncio.ensure_future(consumer.on_partitions_revoked({EVENTS}))
    await asyncio.sleep(0.2)
    assert not revoking.done()  # waits for the event in progress
    assert consumer.ack(in_progress) is True  # marked done although flow is suspended
    await asyncio.wait_for(revoking, timeout=30)
    assert committed[-1] == {EVENTS: 13}
    assert EVENTS not in consumer._acked  # and then Faust dropped the bookkeeping


def test_an_exactly_once_commit_happens_between_events() -> None:
    app = App("faust-ext-eos-commit", broker=NOWHERE, processing_guarantee="exactly_once")
    app.in_worker = True  # as under `faust worker`
    app.consumer_generation_id = 5
    app.topics._acking_topics.add(EVENTS.topic)
    app.flow_control.resume()
    asyncio.run(commit_with_an_event_in_progress(app))


async def commit_with_an_event_in_progress(app: faust.App) -> None:
    """consumer (7): the commit took the acked offsets while the agent went on sending
    outputs into the transactions it was about to commit."""
    gate = app.between_events
    consumer = app.consumer
    consumer._committed_offset[EVENTS] = 10
    consumer.ack(fetched(app, 10))
    in_progress = fetched(app, 11)
    await gate.enter(in_progress)
    committed: list[dict[TP, int]] = []

    async def commit_offsets(offsets: dict[TP, int], start_new_transaction: bool = True) -> bool:
        committed.append(dict(offsets))
        return True

    consumer._commit_offsets = commit_offsets  # type: ignore[method-assign]  # a stand-in on this instance only
    committing = asyncio.ensure_future(consumer._commit_tps({EVENTS}, True))
    await asyncio.sleep(0.1)
    assert not committing.done()  # waits for the event in progress
    following = fetched(app, 12)
    entering = asyncio.ensure_future(gate.enter(following))
    await asyncio.sleep(0.1)
    assert not entering.done()  # no event starts while a commit waits
    consumer.ack(in_progress)
    await asyncio.wait_for(committing, timeout=30)
    assert committed == [{EVENTS: 12}]  # the finished event's offset is in the commit
    await asyncio.wait_for(entering, timeout=30)


def test_a_stream_acknowledges_through_the_consumer(
    app: faust.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """streams.Stream: Faust's compiled stream iterator acknowledged records itself, so
    the consumer's ``ack`` (fixes 2 and 11) never saw them."""
    acked: list[int] = []
    patched_ack = type(app.consumer).ack

    def spy(self: Any, message: Message) -> bool:
        acked.append(message.offset)
        return bool(patched_ack(self, message))

    monkeypatch.setattr(type(app.consumer), "ack", spy)
    asyncio.run(stream_two_records(app))
    assert acked == [10, 11]


async def stream_two_records(app: faust.App) -> None:
    channel = app.channel()
    stream = app.stream(channel)
    for offset in (10, 11):
        message = fetched(app, offset)
        message.incref()  # one stream reads it, as the conductor would count
        await channel.put(app.create_event(b"k", b"v", None, message))
    seen = 0
    async for _event in stream.events():
        seen += 1
        if seen == 2:
            break  # closing the iterator acknowledges the last event
    await stream.stop()


def test_a_record_buffered_when_flow_control_resumes_is_kept(app: faust.App) -> None:
    """streams.FlowControl: recovery resumes flow that is already running after its seek;
    Faust's resume cleared the records the seek had fetched meanwhile."""
    asyncio.run(buffer_then_resume(app))


async def buffer_then_resume(app: faust.App) -> None:
    buffer = app.stream(app.channel()).channel  # what an agent reads: a FlowControlQueue
    await buffer.put(app.create_event(b"k", b"v", None, fetched(app, 0)))
    assert buffer.queue.qsize() == 1
    app.flow_control.resume()  # what recovery does after its seek, first assignment too
    assert buffer.queue.qsize() == 1, "the buffered record was dropped, never processed"
    # Resuming suspended flow still clears what a revocation left behind.
    app.flow_control.suspend()
    app.flow_control.resume()
    assert buffer.queue.qsize() == 0


def test_without_a_committed_offset_a_commit_never_passes_the_first_delivered_record(
    app: faust.App,
) -> None:
    """consumer (3): no committed offset (a new group). Record 0 was delivered and
    then lost before processing; 1 and 2 were processed. Faust committed 3."""
    asyncio.run(lose_the_first_delivered_record(app))


async def lose_the_first_delivered_record(app: faust.App) -> None:
    consumer = app.consumer
    consumer._thread = PartitionLog(committed=None, position=0, end=3)  # type: ignore[attr-defined]  # the client thread stand-in
    consumer._set_active_tps({EVENTS})
    fetcher = SimpleNamespace(_stopped=asyncio.Event())

    async def deliver(message: Message) -> None:
        consumer._unacked_messages.add(message)
        if message.offset > 0:  # record 0 is lost on its way to the agent
            consumer.ack(message)
        if message.offset == 2:
            fetcher._stopped.set()

    consumer.callback = deliver
    await asyncio.wait_for(consumer._drain_messages(fetcher), timeout=30)  # type: ignore[arg-type]  # a fetcher stand-in
    assert consumer._committed_offset[EVENTS] is None
    assert consumer._new_offset(EVENTS) is None
    consumer.ack(fetched(app, 0))  # read again and processed
    assert consumer._new_offset(EVENTS) == 3


def test_transaction_markers_between_delivered_records_do_not_hold_the_commit(
    app: faust.App,
) -> None:
    """consumer (2): an input written in transactions holds a marker after each
    transaction (here at the committed offset 10 and at 13, 17, 18 and 25). Records
    delivered around them were all processed; without recording the offsets the fetcher
    passed as done, the commit stayed at 10 until a heal, for every marker in turn."""
    asyncio.run(drain_past_markers(app))


async def drain_past_markers(app: faust.App) -> None:
    consumer = app.consumer
    markers = frozenset({10, 13, 17, 18, 25})
    consumer._thread = PartitionLog(committed=10, markers=markers)  # type: ignore[attr-defined]  # the client thread stand-in
    consumer._set_active_tps({EVENTS})
    await consumer.perform_seek()  # the assignment: seek to 10, "last read" 10
    fetcher = SimpleNamespace(_stopped=asyncio.Event())

    async def deliver(message: Message) -> None:
        consumer._unacked_messages.add(message)
        consumer.ack(message)
        if message.offset == 29:
            fetcher._stopped.set()

    consumer.callback = deliver
    await asyncio.wait_for(consumer._drain_messages(fetcher), timeout=30)  # type: ignore[arg-type]  # a fetcher stand-in
    assert consumer.head_hole(EVENTS) is None  # 10: the first record came later (3)
    assert consumer._new_offset(EVENTS) == 30


def test_an_unprocessed_record_between_delivered_ones_still_holds_the_commit(
    app: faust.App,
) -> None:
    """consumer (2, 3): only offsets the fetcher passed are gaps; a delivered record that
    was not processed is none, and the commit stops before it."""
    consumer = app.consumer
    consumer._committed_offset[EVENTS] = 10
    asyncio.run(consumer._add_gap(EVENTS, 12, 14))  # markers 12, 13 passed before 14
    for offset in (10, 11, 14, 16):  # 15 delivered, lost before processing
        consumer.ack(fetched(app, offset))
    assert consumer.covered(EVENTS, 12, 14)
    assert not consumer.covered(EVENTS, 12, 16)
    assert consumer._new_offset(EVENTS) == 15


def test_a_changelog_record_waits_for_the_outputs_sent_before_it() -> None:
    asyncio.run(changelog_waits_for_outputs())


async def changelog_waits_for_outputs() -> None:
    app = App("faust-ext-fence", broker=NOWHERE)
    buffer = app.producer.buffer
    channel = Channel()
    output = asyncio.get_running_loop().create_future()
    app.outputs.track(output)  # an action sent, not acknowledged yet
    await buffer.start()
    try:
        buffer.put(record(channel, 1))  # the table write that follows it
        for _ in range(20):
            await asyncio.sleep(0)
        assert channel.handed == []
        output.set_result("delivered")
        await asyncio.wait_for(buffer.flush(), timeout=30)
        assert channel.handed == [1]
    finally:
        await buffer.stop()


class SentRecords:
    """Stands in for the Kafka client: records each send, acknowledges none."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int | None, str | None]] = []

    async def start(self) -> None:
        pass

    async def send(self, topic: str, key: Any, value: Any, partition: Any, *args: Any, **kw: Any):
        self.sent.append((topic, partition, kw.get("transactional_id")))
        return asyncio.get_running_loop().create_future()


def test_every_topic_send_is_an_output_the_changelog_waits_for(app: faust.App) -> None:
    asyncio.run(send_an_output(app))


async def send_an_output(app: faust.App) -> None:
    client = SentRecords()
    app.producer.send = client.send  # this app's client only, started
    app.producer.maybe_start = client.start
    await app.topic("leadscore.actions").send(key=b"k", value=b"v")
    assert client.sent == [("leadscore.actions", None, None)]
    assert app.outputs.mark() == 1


def test_under_exactly_once_an_output_goes_into_its_events_transaction() -> None:
    """producer.TransactionManager.send: Faust looked the output topic up in the
    consumer's metadata, found nothing, and sent outside any transaction."""
    app = App("faust-ext-eos-send", broker=NOWHERE, processing_guarantee="exactly_once")
    app.in_worker = True
    app.consumer_generation_id = 5
    app.topics._acking_topics.add(EVENTS.topic)
    app.flow_control.resume()
    asyncio.run(send_while_processing(app))


async def send_while_processing(app: faust.App) -> None:
    client = SentRecords()
    app.producer.send = client.send
    app.assignor.group_for_topic = lambda topic: 0  # what an assignment sets up
    channel = app.channel()
    stream = app.stream(channel)
    message = fetched(app, 10)
    message.incref()
    await channel.put(app.create_event(b"k", b"v", None, message))
    async for _event in stream.events():
        await app.consumer.transactions.send("leadscore.actions", b"k", b"v", None, None, None)
        break
    await stream.stop()
    assert client.sent == [("leadscore.actions", None, "faust-ext-eos-send-0-0")]


def test_the_worker_refuses_library_versions_it_was_not_tested_with() -> None:
    check_versions()  # the installed ones are the tested ones
    with pytest.raises(UntestedVersions, match=r"faust-streaming 0\.15\.3 \(tested: 9\.9\.9\)"):
        check_versions({"faust-streaming": "9.9.9"})


def test_the_worker_app_refuses_a_transport_other_than_its_own() -> None:
    with pytest.raises(ConfigError, match="its own transport"):
        App("faust-ext-plain", broker="kafka://127.0.0.1:1")


LIBRARIES = ("faust", "mode", "aiokafka")


def library_state() -> dict[tuple[str, ...], Any]:
    """Every attribute of every loaded faust, mode and aiokafka module, and of every
    class they define, by object (held, so ids cannot be reused)."""
    state: dict[tuple[str, ...], Any] = {}
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] not in LIBRARIES or module is None:
            continue
        for attr, value in list(vars(module).items()):
            state[(name, attr)] = value
            if isinstance(value, type) and value.__module__ == name:
                for member, impl in list(vars(value).items()):
                    state[(name, attr, member)] = impl
    return state


def changes(before: dict[tuple[str, ...], Any], after: dict[tuple[str, ...], Any]) -> list[str]:
    changed = [".".join(key) for key, value in before.items() if after.get(key) is not value]
    # New attributes of modules that existed before: only submodules imported since.
    added = [
        ".".join(key)
        for key, value in after.items()
        if key not in before
        and key[0] in {k[0] for k in before}
        and not isinstance(value, types.ModuleType)
        and (len(key) == 2 or (key[0], key[1]) in before)
    ]
    return sorted(changed + added)


def build_and_start_parts() -> None:
    app = build_app(Settings(web_enabled=True), RULES, partitions=3)
    # What a worker builds on its way up: the transport, consumer with its
    # thread, producer with its buffer, transactions, flow control and tables.
    app.consumer  # noqa: B018
    app.producer  # noqa: B018
    app.flow_control  # noqa: B018
    app.tables  # noqa: B018
    eos = build_app(
        Settings(web_enabled=False, processing_guarantee="exactly_once"), RULES, partitions=3
    )
    eos.in_worker = True
    eos.consumer.transactions  # noqa: B018


def test_building_the_worker_changes_no_faust_mode_or_aiokafka_class_or_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = library_state()
    build_and_start_parts()
    assert changes(before, library_state()) == []
    # The check sees a run-time assignment to a library class.
    monkeypatch.setattr(ProducerBuffer, "put", lambda self, fut: None)
    assert changes(before, library_state()) == ["faust.transport.producer.ProducerBuffer.put"]


class EventOf:
    """An event of a partition, as far as a table looks at one."""

    def __init__(self, partition: int) -> None:
        self.message = SimpleNamespace(partition=partition)


def test_delivered_changelog_records_are_applied_with_their_offsets(tmp_path: Path) -> None:
    app = App("faust-ext-test", broker=NOWHERE, store="rocksdb://", datadir=str(tmp_path))
    table = app.Table("leads", partitions=2, key_type=bytes, value_type=bytes)
    topic = table.changelog_topic.get_topic_name()
    table.apply_delivered([(1, 7, b"ann", b"v1"), (0, 3, b"bob", b"v2"), (1, 9, b"ann", b"v3")])
    store = table.data
    assert store.persisted_offset(TP(topic, 1)) == 9  # a restart reads from offset 10
    assert store.persisted_offset(TP(topic, 0)) == 3
    in_one, in_zero = EventOf(1), EventOf(0)
    with in_partition_of(in_one):
        assert table.get(b"ann") == b"v3"  # the later record wins
        assert table.get(b"bob") is None  # each record in its own partition's store
    with in_partition_of(in_zero):
        assert table.get(b"bob") == b"v2"


def test_a_batch_is_what_has_arrived_and_is_never_held_back_for_more(app: faust.App) -> None:
    """streams.Stream.batches: a batch is yielded as soon as the next record would have
    to be waited for; batches yielded and not acknowledged yet are not waited on."""
    asyncio.run(batches_of_what_arrived(app))


async def batches_of_what_arrived(app: faust.App) -> None:
    topic = app.topic(EVENTS.topic)
    stream = app.stream(topic)

    async def arrive(*offsets: int) -> None:
        for offset in offsets:
            message = fetched(app, offset)
            message.incref()
            await stream.channel.put(app.create_event(b"k", b"v", None, message))

    def offsets(batch: list[Any]) -> list[int]:
        return [event.message.offset for event in batch]

    batches = stream.batches(2, acknowledge=False).__aiter__()
    await arrive(0, 1, 2)
    assert offsets(await asyncio.wait_for(batches.__anext__(), 5)) == [0, 1]  # the size
    # The rest at once, not held back waiting for a record that has not arrived.
    assert offsets(await asyncio.wait_for(batches.__anext__(), 5)) == [2]
    # Nothing collected and three events out, unacknowledged: wait for records,
    # not hand out empty batches.
    following = asyncio.ensure_future(batches.__anext__())
    await asyncio.sleep(0.1)
    assert not following.done()
    await arrive(3)
    assert offsets(await asyncio.wait_for(following, 5)) == [3]
    await stream.stop()


HANDOFF = TP("handoff", 0)


class TwoInputs:
    """The client thread's stand-in: an events partition (10 records) and its hand-off
    partition (6 records after the committed offset 0), fetched five at a time,
    events first, and only from the partitions asked for."""

    def __init__(self) -> None:
        self.position = {EVENTS: 0, HANDOFF: 0}
        self.end = {EVENTS: 10, HANDOFF: 6}

    async def getmany(
        self,
        active_partitions: Any,
        timeout: float,  # noqa: ASYNC109 (aiokafka's signature)
    ) -> dict[TP, list[Any]]:
        for tp in (EVENTS, HANDOFF):
            if active_partitions and tp not in active_partitions:
                continue
            start = self.position[tp]
            if start < self.end[tp]:
                batch = range(start, min(start + 5, self.end[tp]))
                self.position[tp] = batch[-1] + 1
                return {tp: [kafka_record(offset, tp) for offset in batch]}
        await asyncio.sleep(0.01)
        return {}

    async def seek_to_committed(self) -> dict[TP, int | None]:
        return {EVENTS: 0, HANDOFF: 0}

    def seek(self, tp: TP, offset: int) -> None:
        self.position[tp] = offset

    async def earliest_offsets(self, *partitions: TP) -> dict[TP, int]:
        return dict.fromkeys(partitions, 0)

    async def highwaters(self, *partitions: TP) -> dict[TP, int]:
        return {tp: self.end[tp] for tp in partitions}

    def highwater(self, tp: TP) -> int:
        return self.end[tp]

    def assignment(self) -> set[TP]:
        return {EVENTS, HANDOFF}


@pytest.mark.parametrize("rule", [True, False])
def test_after_an_assignment_waiting_hand_off_records_are_delivered_first(
    app: faust.App, rule: bool
) -> None:
    """consumer (10): after the seek an assignment makes, the partition's events are
    not fetched until its hand-off records up to the end found then were delivered
    (a replay then takes them in the order the lost run did). Faust's class delivers
    the events as they come (here first)."""
    if rule:
        app.handoffs_first = HandoffsFirst(HANDOFF.topic, frozenset({EVENTS.topic}))
    app.topics._acking_topics.add(HANDOFF.topic)
    delivered = asyncio.run(deliver_after_an_assignment(app))
    handoffs = [("handoff", n) for n in range(6)]
    events = [("events", n) for n in range(10)]
    if rule:
        assert delivered == handoffs + events
    else:
        assert delivered[:5] == events[:5]
        assert sorted(delivered) == sorted(handoffs + events)


async def deliver_after_an_assignment(app: faust.App) -> list[tuple[str, int]]:
    consumer = app.consumer
    consumer._thread = TwoInputs()  # type: ignore[attr-defined]  # the client thread stand-in
    consumer._set_active_tps({EVENTS, HANDOFF})  # what an assignment does
    await consumer.perform_seek()
    delivered: list[tuple[str, int]] = []
    fetcher = SimpleNamespace(_stopped=asyncio.Event())

    async def deliver(message: Message) -> None:
        delivered.append((message.topic, message.offset))
        if len(delivered) == 16:
            fetcher._stopped.set()

    consumer.callback = deliver
    await asyncio.wait_for(consumer._drain_messages(fetcher), timeout=30)  # type: ignore[arg-type]  # a fetcher stand-in
    return delivered


def test_a_commit_after_the_transactions_ended_opens_one_for_its_offsets() -> None:
    """producer.TransactionManager.reopen_ended: stopping, Faust ends the transactions
    with a commit twice; offsets acknowledged between the two met a producer in no
    transaction (IllegalOperation) and the worker's stop hung until its timeout."""
    app = App("faust-ext-eos-reopen", broker=NOWHERE, processing_guarantee="exactly_once")
    app.assignor.group_for_topic = lambda topic: 0  # what an assignment sets up
    begun: list[str] = []

    class Manager:
        def __init__(self, active: bool) -> None:
            self.active = active

        def is_in_transaction(self) -> bool:
            return self.active

    ended = SimpleNamespace(_txn_manager=Manager(False))
    open_one = SimpleNamespace(_txn_manager=Manager(True))
    app.producer._transaction_producers = {  # type: ignore[attr-defined]  # the driver's producers
        "faust-ext-eos-reopen-0-0": ended,
        "faust-ext-eos-reopen-0-1": open_one,
    }

    async def begin(transactional_id: str) -> None:
        begun.append(transactional_id)

    app.producer.maybe_begin_transaction = begin  # type: ignore[method-assign]  # this app's producer only
    other = TP(EVENTS.topic, 1)
    asyncio.run(app.consumer.transactions.reopen_ended({EVENTS: 5, other: 7}))  # type: ignore[attr-defined]  # leadscore's TransactionManager
    assert begun == ["faust-ext-eos-reopen-0-0"]
