"""A lead's latest score changes: kept where they already are, on the score-changes topic.

Every score change the worker sends goes to the score-changes topic (the audit
log), keyed by contact. The lead record keeps where its last
``LEADSCORE_HISTORY_SIZE`` changes landed (``change_partition`` and
``change_offsets``, a few bytes each in the binary encoding), and
``/leads/{id}/history`` reads those records back from the topic. Nothing else
is stored: no per-lead ring, no changelog record beyond the lead's own, and the
history survives any recovery because the lead record does.

The offsets are known once the broker acknowledges the score change, which the
worker waits for before it writes the lead record (the changelog waits for the
outputs in any case: ``faust_ext.ordering``). A change the topic no longer holds
(its retention passed) is left out of the answer.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from leadscore.codecs.read_back import decode_output
from leadscore.config import Settings
from leadscore.errors import HistoryUnavailable
from leadscore.scoring import LeadRecord

log = logging.getLogger("leadscore.stream")

#: How long one read of a change may take before the history is reported unavailable.
READ_TIMEOUT_S = 5.0


def keep_change(record: LeadRecord, partition: int, offset: int, size: int) -> None:
    """Remember that ``record``'s latest score change is at ``partition``/``offset``."""
    kept = record.change_offsets if record.change_partition == partition else []
    record.change_partition = partition
    record.change_offsets = [*kept, offset][-size:] if size else []


class ChangeReader:
    """Reads score changes back by offset, with one consumer assigned per read."""

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.score_changes_topic
        self.size = settings.history_size
        self._config = {
            **settings.confluent_config(),
            "group.id": f"{settings.app_id}-history-reader",  # never joins, never commits
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "isolation.level": "read_committed",
        }
        self._consumer: Consumer | None = None
        self._lock = threading.Lock()

    def _read(self, contact_id: str, partition: int, offsets: list[int]) -> list[Any]:
        with self._lock:
            if self._consumer is None:
                self._consumer = Consumer(self._config)
            consumer = self._consumer
            key = contact_id.encode("utf-8")
            changes = []
            for offset in offsets:
                consumer.assign([TopicPartition(self.topic, partition, offset)])
                message = consumer.poll(READ_TIMEOUT_S)
                if message is None:
                    raise HistoryUnavailable(f"{self.topic} did not answer in {READ_TIMEOUT_S} s")
                if message.error() is not None:
                    raise HistoryUnavailable(str(message.error()))
                if message.offset() == offset and message.key() == key:
                    changes.append(decode_output(message.value()))
            consumer.unassign()
            return changes

    async def latest(self, record: LeadRecord, limit: int) -> list[Any]:
        """Up to ``limit`` of the lead's score changes, newest first."""
        wanted = list(reversed(record.change_offsets))[:limit]
        if not wanted:
            return []
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            None, self._read, record.contact_id, record.change_partition, wanted
        )
