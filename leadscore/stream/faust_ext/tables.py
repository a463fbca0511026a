"""The table class: changelog records the worker delivered itself, applied the way recovery does.

Under at_least_once the worker sends a batch's changelog records through
librdkafka (``stream.sender``) after the batch's outputs were acknowledged,
instead of writing ``table[key] = value``, which queues each record in Faust's
producer buffer and hands it to aiokafka one at a time (the worker log showed
the buffer full, holding the stream, 24 times in one benchmark run).
Once the broker has acknowledged them, ``Table.apply_delivered`` writes them
to the local store through the store's own ``apply_changelog_batch``, the
method Faust's recovery uses: one RocksDB write batch per partition, then the
partition's persisted offset, so a restart after a clean stop reads the
changelog from the record after the last one applied, exactly as after
recovery. The local store never holds a write the changelog lacks.

Under exactly_once the worker writes the table as Faust intends (the changelog
records go into the source partition's transaction).
"""

from __future__ import annotations

from collections.abc import Iterable

import faust
from faust.types import TP

from leadscore.stream.faust_ext.recovery import applied, as_events


class Table(faust.Table[bytes, bytes]):
    """Faust's table, which can also apply changelog records the caller delivered."""

    def apply_delivered(self, records: Iterable[tuple[int, int, bytes, bytes | None]]) -> None:
        """Apply (partition, offset, key, value) records, acknowledged in the changelog."""
        topic = self.changelog_topic.get_topic_name()
        tps: dict[int, TP] = {}
        events = []
        for partition, offset, key, value in records:
            tp = tps.get(partition)
            if tp is None:
                tp = tps[partition] = TP(topic, partition)
            events.append(applied(tp, offset, key, value))
        self.apply_changelog_batch(as_events(events))
