"""Is an event on its contact's partition? The Java client's murmur2 key partitioner decides.

A contact's lead lives on its key's murmur2 partition, where Java producers and
Faust put it and where the query API looks for it. An event a producer put
elsewhere (librdkafka's default partitioner, consistent_random, hashes with
crc32) is handed to its key's partition through the hand-off topic before it is
scored (``leadscore.step.identity``), so a contact is never split into two
leads. That costs a second write and read of the event, so the worker counts
such events and says which partitions they arrive on: the producer should
partition with murmur2 (librdkafka clients: ``partitioner=murmur2_random``).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

from aiokafka.partitioner import murmur2

log = logging.getLogger(__name__)


def key_partition(key: bytes, partitions: int) -> int:
    """The partition a Java producer (and Faust) puts ``key`` on."""
    hashed: int = murmur2(key)
    return (hashed & 0x7FFFFFFF) % partitions


class PartitionCheck:
    """Counts events that are not on their key's partition; warns at most once a period."""

    def __init__(
        self,
        partitions: int,
        every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.partitions = partitions
        self.every = every
        self.clock = clock
        self.unsaid: Counter[int] = Counter()  # off-partition events by partition, not yet logged
        self.said_at: float | None = None

    def on_partition(self, key: bytes, partition: int) -> bool:
        """Whether ``key`` belongs on ``partition``; if not, count it (and maybe say so)."""
        if key_partition(key, self.partitions) == partition:
            return True
        self.count(Counter({partition: 1}))
        return False

    def count(self, off: Counter[int]) -> None:
        """Count events found off their key's partition (by partition); maybe say so."""
        if not off:
            return
        self.unsaid.update(off)
        now = self.clock()
        if self.said_at is None or now - self.said_at >= self.every:
            self.said_at = now
            counts = ", ".join(f"{n} on partition {p}" for p, n in sorted(self.unsaid.items()))
            log.warning(
                "events keyed to another partition than the one they arrived on (%s): "
                "the producer does not partition keys with murmur2 as Java clients and "
                "Faust do (librdkafka clients: set partitioner=murmur2_random); each is "
                "handed to its key's partition before it is scored, at the cost of a "
                "second write and read",
                counts,
            )
            self.unsaid.clear()
