"""Each lead's latest score changes, kept in a bounded ring in the ``history`` table.

The n-th scored event of a lead (its ``event_count`` after the event) is stored
under slot ``(n - 1) % size``, so each event writes one small entry and a lead
never holds more than ``size`` of them. Each entry carries its sequence number:
a slot left over from a larger ring (the size setting was lowered) is
recognised and skipped on read.

The table is any mutable mapping of bytes to bytes (a Faust table in the worker,
a dict in tests). Its writes go to the changelog partition of the record being
processed, which is the lead's partition, so the ring moves with the lead.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import orjson


class History:
    def __init__(self, table: MutableMapping[bytes, bytes], size: int) -> None:
        self.table = table
        self.size = size

    def _key(self, contact_id: str, seq: int) -> bytes:
        return f"{(seq - 1) % self.size:04d}:{contact_id}".encode()

    def record(self, contact_id: str, seq: int, change: dict[str, Any]) -> None:
        """Keep ``change`` as the lead's ``seq``-th score change (seq counts from 1)."""
        if self.size:
            self.table[self._key(contact_id, seq)] = orjson.dumps({"seq": seq, "change": change})

    def latest(self, contact_id: str, last_seq: int, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` changes, newest first, of a lead whose latest change is ``last_seq``."""
        changes = []
        for seq in range(last_seq, max(0, last_seq - min(limit, self.size)), -1):
            stored = self.table.get(self._key(contact_id, seq))
            if stored is None:
                continue
            entry = orjson.loads(stored)
            if entry["seq"] == seq:
                changes.append(entry["change"])
        return changes
