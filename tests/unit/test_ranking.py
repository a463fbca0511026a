"""The time-invariant ranking key (issue 23): it orders leads exactly as their current
scores do, at any time, so an index on it never needs re-sorting as scores decay."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from leadscore.scoring import LeadRecord, load_rules
from leadscore.scoring.engine import score_at, stage_drop_at
from leadscore.scoring.ranking import RankIndex, current_from_key, rank_key

HALF_LIFE = 30 * 86_400_000.0
YEAR = 365 * 86_400_000
T0 = 1_762_000_000_000

scores = st.one_of(
    st.just(0.0),
    st.floats(min_value=1e-3, max_value=1e5),
    st.floats(min_value=-1e5, max_value=-1e-3),
)
leads = st.lists(st.tuples(scores, st.integers(T0 - YEAR, T0)), min_size=2, max_size=40)


def current(score: float, ref: int, now: int) -> float:
    return score * math.pow(2.0, -(now - ref) / HALF_LIFE)


def below(a: float, b: float) -> bool:
    """a <= b, allowing for the last bits of two different float computations."""
    return a <= b + 1e-9 * max(abs(a), abs(b))


@given(leads, st.integers(T0 - YEAR, T0 + 2 * YEAR))
def test_the_key_orders_leads_as_their_current_scores_at_any_time(found, now) -> None:
    ordered = sorted(found, key=lambda lead: rank_key(lead[0], lead[1], HALF_LIFE))
    currents = [current(s, ref, now) for s, ref in ordered]
    assert all(below(a, b) for a, b in itertools.pairwise(currents)), currents


@given(scores, st.integers(T0 - YEAR, T0), st.integers(T0 - YEAR, T0 + 2 * YEAR))
def test_a_key_reads_back_as_the_current_score(score, ref, now) -> None:
    back = current_from_key(rank_key(score, ref, HALF_LIFE), now, HALF_LIFE)
    assert math.isclose(back, current(score, ref, now), rel_tol=1e-9, abs_tol=1e-300)


def test_decay_alone_never_reorders_two_leads() -> None:
    """A lead at 80 last active a month ago against one at 45 active now: 40 vs 45
    now, and in a year still in that order, as their keys say."""
    old, fresh = rank_key(80.0, T0 - 30 * 86_400_000, HALF_LIFE), rank_key(45.0, T0, HALF_LIFE)
    assert old < fresh
    for later in (T0, T0 + 90 * 86_400_000, T0 + YEAR):
        assert current(80.0, T0 - 30 * 86_400_000, later) < current(45.0, T0, later)


# The per-partition index (RankIndex) against a brute-force scan of the same leads.

RULES = load_rules()
STAGES = [stage.name for stage in RULES.stages]
DAY = 86_400_000

lead_records = st.builds(
    lambda contact, partition, score, age, stage, account, count: (
        partition,
        LeadRecord(
            contact_id=f"c{contact}",
            account_id=None if account is None else f"acct-{account}",
            stage=stage,
            rules_version=RULES.version,
            score=score,
            ref_ms=T0 - age,
            event_count=count,
        ),
    ),
    st.integers(0, 30),
    st.integers(0, 3),
    st.one_of(st.just(0.0), st.floats(min_value=-50, max_value=400)),
    st.integers(0, 120 * DAY),
    st.sampled_from(STAGES),
    st.one_of(st.none(), st.integers(0, 2)),
    st.integers(0, 3),
)
writes = st.lists(
    st.one_of(lead_records, st.tuples(st.integers(0, 3), st.integers(0, 30))), max_size=60
)


def replay(index: RankIndex, plan: list) -> dict[str, tuple[int, LeadRecord]]:
    """Apply writes (a record, or (partition, n): delete contact n) to the index and to a
    dict; the dict is what a scan sees."""
    stored: dict[str, tuple[int, LeadRecord]] = {}
    for item in plan:
        partition, what = item
        if isinstance(what, LeadRecord):
            old = stored.get(what.contact_id)
            if old is not None and old[0] != partition:  # a contact lives in one partition
                index.put(old[0], what.contact_id, None)
            stored[what.contact_id] = (partition, what)
            index.put(partition, what.contact_id, what)
        else:
            contact = f"c{what}"
            old = stored.pop(contact, None)
            if old is not None:
                index.put(old[0], contact, None)
    return stored


@given(
    writes,
    st.integers(T0, T0 + 200 * DAY),
    st.integers(1, 10),
    st.one_of(st.none(), st.sampled_from(STAGES)),
    st.one_of(st.none(), st.floats(min_value=-10, max_value=100)),
    st.one_of(st.none(), st.just("acct-1")),
)
def test_the_index_lists_what_a_scan_of_every_lead_finds(
    plan, now, limit, stage, min_score, account
) -> None:
    index = RankIndex(RULES)
    stored = replay(index, plan)
    listed = index.top(range(4), now, limit, stage, min_score, account)

    def current_of(record: LeadRecord) -> float:
        return score_at(record, RULES, now)

    candidates = [
        r
        for _, r in stored.values()
        if r.event_count
        and (stage is None or r.stage == stage)
        and (account is None or r.account_id == account)
        and (min_score is None or current_of(r) >= min_score)
    ]
    want = sorted(candidates, key=current_of, reverse=True)
    assert len(listed) == min(limit, len(want))
    for got, expected in zip(listed, want, strict=False):
        assert math.isclose(got.score, current_of(expected), rel_tol=1e-9, abs_tol=1e-12)
    assert len(index) == sum(1 for _, r in stored.values() if r.event_count)


@given(writes, st.integers(T0, T0 + 200 * DAY), st.integers(0, 60 * DAY))
def test_cooling_lists_the_leads_whose_stage_runs_out_in_the_window(plan, now, within) -> None:
    index = RankIndex(RULES)
    stored = replay(index, plan)
    got = index.cooling(range(4), now, within, 1000)
    drops = {r.contact_id: stage_drop_at(r, RULES) for _, r in stored.values()}
    want = sorted(
        (at, contact) for contact, at in drops.items() if at is not None and at <= now + within
    )
    assert [(at, listed.contact_id) for at, listed in got] == want


def test_a_stub_an_erased_entry_and_a_withdrawn_lead_are_not_listed() -> None:
    index = RankIndex(RULES)
    lead = LeadRecord("ada", None, STAGES[-1], RULES.version, score=90.0, ref_ms=T0, event_count=3)
    index.put(0, "ada", lead)
    assert [x.contact_id for x in index.top([0], T0, 5)] == ["ada"]
    index.put(0, "ada", replace(lead, alias_of="bob"))
    assert index.top([0], T0, 5) == []
    index.put(0, "ada", replace(lead, consent="withdrawn"))
    assert index.top([0], T0, 5) == []
