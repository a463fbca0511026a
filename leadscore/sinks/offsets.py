"""Which offsets a sink may commit: only past records whose work is finished.

Records of a partition are handed out in offset order but may finish in any
order (deliveries run concurrently). Because they are handed out in order,
every offset below the lowest one still in flight is finished (or does not
exist: compaction and transaction markers leave gaps), so that lowest
pending offset is what may be committed; with nothing in flight, one past the
last record handed out. A restart never skips a record that was in flight.
"""

from __future__ import annotations


class PartitionProgress:
    def __init__(self) -> None:
        self.pending: set[int] = set()
        self.last: int | None = None
        self.committed: int | None = None

    def started(self, offset: int) -> None:
        self.pending.add(offset)
        self.last = offset

    def finished(self, offset: int) -> None:
        self.pending.discard(offset)

    def to_commit(self) -> int | None:
        """The offset to commit now, if it moved since the last commit."""
        if self.last is None:
            return None
        offset = min(self.pending) if self.pending else self.last + 1
        return None if offset == self.committed else offset


class Progress:
    """PartitionProgress per (topic, partition) consumed."""

    def __init__(self) -> None:
        self.partitions: dict[tuple[str, int], PartitionProgress] = {}

    def of(self, partition: tuple[str, int]) -> PartitionProgress:
        return self.partitions.setdefault(partition, PartitionProgress())

    def forget(self, partition: tuple[str, int]) -> None:
        self.partitions.pop(partition, None)

    @property
    def in_flight(self) -> int:
        return sum(len(p.pending) for p in self.partitions.values())
