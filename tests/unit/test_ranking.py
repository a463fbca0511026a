"""The time-invariant ranking key (issue 23): it orders leads exactly as their current
scores do, at any time, so an index on it never needs re-sorting as scores decay."""

from __future__ import annotations

import itertools
import math

from hypothesis import given
from hypothesis import strategies as st

from leadscore.scoring.ranking import current_from_key, rank_key

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
