"""Recovery in bulk: changelog partitions read by librdkafka into the store before Faust looks.

Faust restores a table by reading its changelog through the worker's own
consumer and stream machinery, one record at a time: about 57 µs a record on
this machine (870,602 records for 99,555 leads took 49.5 s in the 2026-12-01
standard run, ``make bench``). When a rebalance assigns a changelog partition
as active, ``Recovery`` first hands it to ``ChangelogLoader``, which reads it
from the record after the store's persisted offset with a librdkafka consumer
(assigned, no group; ``read_committed``, so under exactly_once only committed
transactions) and applies it chunk by chunk through the table's own
``apply_changelog_batch``, the method Faust's recovery uses: one RocksDB write
batch per partition, then the partition's persisted offset. Faust's recovery
then starts from that offset and finds little or nothing left.

The loader runs inside Faust's recovery step, which Faust bounds by
``broker_request_timeout`` (a step that outlasts it stops recovery for good),
so it stops after half of that and leaves the rest to Faust, which reads on
from the last applied offset. A rebalance during loading cancels it between
chunks: every applied chunk has its offset, so nothing is applied twice or
skipped. The customisation is one method (``Recovery._build_offsets``, pinned
through ``versions``) and the manager that builds this ``Recovery``
(``TableManager``, Faust's ``TableManager`` class setting).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from faust.tables.manager import TableManager as FaustTableManager
from faust.tables.recovery import Recovery as FaustRecovery
from faust.types import TP, CollectionT, EventT
from faust.types.tuples import Message

log = logging.getLogger("leadscore.recovery")

#: Records asked of librdkafka per chunk (one write batch per partition each).
CHUNK_RECORDS = 20_000
#: How long one chunk waits for more records (librdkafka returns when it has them all).
CHUNK_WAIT_S = 0.1


class Applied:
    """What a store's ``apply_changelog_batch`` reads of a changelog event: its message."""

    __slots__ = ("message",)

    def __init__(self, message: Message) -> None:
        self.message = message


def applied(tp: TP, offset: int, key: bytes | None, value: bytes | None) -> Applied:
    """A changelog record at ``tp``/``offset``, as a store applies it."""
    return Applied(Message(tp.topic, tp.partition, offset, 0.0, 0, None, key, value, None, tp=tp))


def as_events(applied: list[Applied]) -> Iterable[EventT[Any]]:
    # Stores read only ``event.message`` of each (faust/stores/rocksdb.py, memory.py).
    return cast(list[EventT[Any]], applied)


class ChangelogLoader:
    """Reads assigned changelog partitions into their tables' stores."""

    def __init__(self, client_config: Mapping[str, Any], group_id: str) -> None:
        self.config = {
            **client_config,
            "group.id": group_id,  # required by librdkafka; nothing is committed
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }

    async def load(
        self,
        tables: Mapping[TP, CollectionT],
        offsets: Counter[TP],
        highwaters: Mapping[TP, int],
        budget_s: float,
    ) -> None:
        """Apply each partition's records after ``offsets[tp]`` up to its highwater.

        ``offsets`` (Faust's: the last offset the store has, or None) is updated as
        chunks are applied; ``highwaters`` are the last offsets (Faust's highwater - 1).
        """
        have = {tp: -1 if offsets[tp] is None else offsets[tp] for tp in tables}
        todo = {tp: last for tp, last in have.items() if highwaters.get(tp, -1) > last}
        if not todo:
            return
        started = time.monotonic()
        deadline = started + budget_s
        consumer = Consumer(self.config)
        consumer.assign(
            [TopicPartition(tp.topic, tp.partition, last + 1) for tp, last in todo.items()]
        )
        count = 0
        reading: asyncio.Future[list[Any]] | None = None
        try:
            while todo and time.monotonic() < deadline:
                reading = asyncio.ensure_future(
                    asyncio.to_thread(consumer.consume, CHUNK_RECORDS, CHUNK_WAIT_S)
                )
                messages = await reading
                reading = None
                chunk: dict[TP, list[Applied]] = {}
                for message in messages:
                    error = message.error()
                    tp = TP(message.topic(), message.partition())
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            todo.pop(tp, None)
                            continue
                        raise KafkaException(error)
                    chunk.setdefault(tp, []).append(
                        applied(tp, message.offset(), message.key(), message.value())
                    )
                for tp, events in chunk.items():
                    tables[tp].apply_changelog_batch(as_events(events))
                    last = events[-1].message.offset
                    offsets[tp] = last
                    count += len(events)
                    if last >= highwaters[tp]:
                        todo.pop(tp, None)
        finally:
            if reading is not None and not reading.done():  # cancelled: close once it returns
                reading.add_done_callback(lambda _: consumer.close())
            else:
                consumer.close()
            log.info(
                "changelog loaded in bulk: %s record(s) in %.2f s%s",
                count,
                time.monotonic() - started,
                f"; {len(todo)} partition(s) left to Faust's recovery" if todo else "",
            )


class Recovery(FaustRecovery):
    """Faust's recovery, which loads active changelog partitions in bulk first."""

    async def _build_offsets(
        self, consumer: Any, tps: Any, destination: Counter[TP], title: str
    ) -> None:
        loader = getattr(self.app, "changelog_loader", None)
        if title == "active" and tps and isinstance(loader, ChangelogLoader):
            await loader.load(
                {tp: self.tp_to_table[tp] for tp in tps},
                destination,
                self.active_highwaters,
                budget_s=float(self.app.conf.broker_request_timeout) / 2,
            )
        await super()._build_offsets(consumer, tps, destination, title)


class TableManager(FaustTableManager):
    """Faust's table manager with a ``Recovery`` that loads in bulk."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = Recovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return cast(Recovery, self._recovery)
