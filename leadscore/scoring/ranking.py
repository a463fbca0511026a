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

import math

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
