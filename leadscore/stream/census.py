"""Leads by stage per partition, kept in a table next to the leads themselves.

Each partition has one key (``p3:stages``) holding ``{stage: leads}``; it is
updated in the same processing step as the lead whose stage changed, so it
moves with the partition in a rebalance and is recovered with it from the
changelog. A scrape sums the keys of the partitions a worker owns: a few point
reads, never a scan of the leads.

Under exactly_once the counts change in the same transaction as the leads.
Under at_least_once a crash can in rare cases persist one write and not the
other (the changelog writes are not atomic), leaving a count off by one.

The store is anything with ``get`` and item assignment: a Faust table in the
worker, a dict in tests.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping

import orjson


class Census:
    def __init__(self, store: MutableMapping[bytes, bytes]) -> None:
        self.store = store

    @staticmethod
    def _key(partition: int) -> bytes:
        return f"p{partition}:stages".encode()

    def of(self, partition: int) -> dict[str, int]:
        raw = self.store.get(self._key(partition))
        counts: dict[str, int] = orjson.loads(raw) if raw else {}
        return counts

    def move(self, partition: int, old: str | None, new: str | None) -> None:
        """One lead of ``partition`` went from stage ``old`` (None: new lead) to ``new``."""
        if old == new:
            return
        counts = self.of(partition)
        if old is not None:
            left = counts.get(old, 0) - 1
            if left > 0:
                counts[old] = left
            else:
                counts.pop(old, None)
        if new is not None:
            counts[new] = counts.get(new, 0) + 1
        self.store[self._key(partition)] = orjson.dumps(counts, option=orjson.OPT_SORT_KEYS)

    def total(self, partitions: Iterable[int], stages: Iterable[str]) -> dict[str, int]:
        """Leads by stage over ``partitions``; every one of ``stages`` is present (0 if none)."""
        counts = dict.fromkeys(stages, 0)
        for partition in partitions:
            for stage, leads in self.of(partition).items():
                counts[stage] = counts.get(stage, 0) + leads
        return counts
