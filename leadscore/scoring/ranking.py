"""A ranking key that does not change with time (issue 23's ranked lists). Pure.

A lead's current score is ``s * 2^(-(now - ref) / h)`` (its score ``s`` as of its
latest event time ``ref``, half-life ``h``). For a positive score,

    log2(current) = log2(s) + ref / h - now / h,

so ``log2(s) + ref / h`` orders positive leads exactly as their current scores
do, at every ``now``: an index kept on it never needs re-sorting as scores decay.
A negative score decays toward 0 from below, so the order among negatives is the
reverse of the same quantity; zero sits between. ``rank_key`` folds the three
cases into one tuple that sorts in the order of the current scores.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from sortedcontainers import SortedList  # type: ignore[import-untyped]  # the package ships no type information

from leadscore.scoring.engine import stage_drop_at
from leadscore.scoring.records import LeadRecord
from leadscore.scoring.rules import Rules

RankKey = tuple[int, float]


def rank_key(score: float, ref_ms: int, half_life_ms: float) -> RankKey:
    """A key whose order is the order of the current scores, at any time."""
    if score == 0.0:
        return (0, 0.0)
    magnitude = math.log2(abs(score)) + ref_ms / half_life_ms
    return (1, magnitude) if score > 0 else (-1, -magnitude)


def current_from_key(key: RankKey, now_ms: int, half_life_ms: float) -> float:
    """The current score a key stands for at ``now_ms`` (for reading an index back)."""
    sign, value = key
    if sign == 0:
        return 0.0
    magnitude = value if sign > 0 else -value
    return sign * math.pow(2.0, magnitude - now_ms / half_life_ms)


@dataclass(frozen=True, slots=True)
class Ranked:
    """One lead as the index keeps it."""

    contact_id: str
    key: RankKey
    stage: str
    account_id: str | None
    drop_at: int | None  # when decay takes it below its stage's bottom (engine.stage_drop_at)


@dataclass(frozen=True, slots=True)
class Listed:
    """One lead of a ranked list, at the time it was asked for."""

    contact_id: str
    score: float  # decayed to the time asked
    stage: str
    account_id: str | None
    next_stage: str | None
    points_to_next: float | None


def ranked(record: LeadRecord, rules: Rules) -> Ranked | None:
    """What the index keeps of a stored record; None for what is no lead to call (a
    merged contact's stub, an erased contact's entry, a lead with consent withdrawn)."""
    if record.alias_of is not None or not record.event_count or record.frozen:
        return None
    return Ranked(
        record.contact_id,
        rank_key(record.score, record.ref_ms, rules.half_life_ms),
        record.stage,
        record.account_id,
        stage_drop_at(record, rules),
    )


class RankIndex:
    """Every partition's leads in the order of their current scores, and in the order
    their stages run out; kept on keys that do not change with time, so decay never
    re-sorts it. Written where lead records are written, rebuilt from the store when
    a partition is assigned."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.half_life_ms = rules.half_life_ms
        self.next_stage = {low.name: high for low, high in itertools.pairwise(rules.stages)}
        # (key, contact, partition) and (drop time, contact, partition), per partition
        self.by_score: dict[int, SortedList] = defaultdict(SortedList)
        self.by_drop: dict[int, SortedList] = defaultdict(SortedList)
        self.entries: dict[int, dict[str, Ranked]] = defaultdict(dict)

    def put(self, partition: int, contact_id: str, record: LeadRecord | None) -> None:
        """``contact_id``'s lead is now ``record`` (None: deleted)."""
        entries = self.entries[partition]
        old = entries.pop(contact_id, None)
        if old is not None:
            self.by_score[partition].remove((old.key, contact_id, partition))
            if old.drop_at is not None:
                self.by_drop[partition].remove((old.drop_at, contact_id, partition))
        new = None if record is None else ranked(record, self.rules)
        if new is None:
            return
        entries[contact_id] = new
        self.by_score[partition].add((new.key, contact_id, partition))
        if new.drop_at is not None:
            self.by_drop[partition].add((new.drop_at, contact_id, partition))

    def rebuild(self, partition: int, records: Iterable[LeadRecord]) -> None:
        self.forget(partition)
        for record in records:
            self.put(partition, record.contact_id, record)

    def forget(self, partition: int) -> None:
        for table in (self.by_score, self.by_drop, self.entries):
            table.pop(partition, None)

    def keep_only(self, partitions: Iterable[int]) -> None:
        kept = set(partitions)
        for partition in [p for p in self.entries if p not in kept]:
            self.forget(partition)

    def __len__(self) -> int:
        return sum(len(entries) for entries in self.entries.values())

    def top(
        self,
        partitions: Iterable[int],
        now_ms: int,
        limit: int,
        stage: str | None = None,
        min_score: float | None = None,
        account_id: str | None = None,
    ) -> list[Listed]:
        """The ``limit`` leads of ``partitions`` with the highest current scores (ties by
        contact id, Z to A), filtered by stage, a floor on the current score and account."""
        streams = [reversed(self.by_score[p]) for p in set(partitions) if p in self.by_score]
        found: list[Listed] = []
        for key, contact, partition in heapq.merge(*streams, reverse=True):
            score = current_from_key(key, now_ms, self.half_life_ms)
            if min_score is not None and score < min_score:
                break  # the rest score lower still
            entry = self.entries[partition][contact]
            if stage is not None and entry.stage != stage:
                continue
            if account_id is not None and entry.account_id != account_id:
                continue
            found.append(self._listed(entry, score))
            if len(found) >= limit:
                break
        return found

    def cooling(
        self, partitions: Iterable[int], now_ms: int, within_ms: int, limit: int
    ) -> list[tuple[int, Listed]]:
        """Leads whose stage runs out by ``now_ms + within_ms``, soonest first, with when
        (a time before ``now_ms``: due now, the next timer tick moves it)."""
        streams = [iter(self.by_drop[p]) for p in set(partitions) if p in self.by_drop]
        found: list[tuple[int, Listed]] = []
        for at, contact, partition in heapq.merge(*streams):
            if at > now_ms + within_ms or len(found) >= limit:
                break
            entry = self.entries[partition][contact]
            score = current_from_key(entry.key, now_ms, self.half_life_ms)
            found.append((at, self._listed(entry, score)))
        return found

    def _listed(self, entry: Ranked, score: float) -> Listed:
        nxt = self.next_stage.get(entry.stage)
        return Listed(
            entry.contact_id,
            score,
            entry.stage,
            entry.account_id,
            None if nxt is None else nxt.name,
            None if nxt is None else max(0.0, nxt.min_score - score),
        )
