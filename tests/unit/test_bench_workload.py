"""The benchmark workload is reproducible and has the mix the issue asks for."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import itertools

from workload import SIZES, Workload


def stream(seed: int, count: int = 5_000) -> list[bytes]:
    workload = Workload(500, seed=seed, prefix="w-")
    return [orjson.dumps(e) for e in workload.events(count, 1_700_000_000_000, 86_400_000)]


def test_same_seed_same_bytes_other_seed_other_stream() -> None:
    assert stream(3) == stream(3)
    assert stream(3) != stream(4)


def test_mix_many_views_fewer_emails_rare_demos_unique_ids() -> None:
    events = [orjson.loads(raw) for raw in stream(5, 20_000)]
    kinds = Counter(e["type"] for e in events)
    assert kinds["page_view"] > kinds["email_open"] > kinds["demo_request"] > 0
    assert kinds["page_view"] > 0.5 * len(events)
    assert kinds["demo_request"] < 0.05 * len(events)
    assert len({e["event_id"] for e in events}) == len(events)


def test_hot_contacts_burst() -> None:
    workload = Workload(500, seed=9, prefix="w-")
    hot = {c.contact_id for c in workload.model.contacts if c.hot}
    events = list(workload.events(20_000, 0, 86_400_000))
    runs, run = [], 1
    for before, after in itertools.pairwise(events):
        if after["contact_id"] == before["contact_id"]:
            run += 1
        else:
            runs.append((before["contact_id"], run))
            run = 1
    hot_runs = [n for c, n in runs if c in hot]
    assert hot
    assert max(hot_runs) >= 5
    # A burst's events are seconds apart in event time, not spread over the span.
    start = 0
    for contact, n in runs:
        if n >= 5:
            times = [e["occurred_at"] for e in events[start : start + n]]
            assert {e["contact_id"] for e in events[start : start + n]} == {contact}
            assert max(times) - min(times) <= 8 * 10_000
        start += n


def test_sizes_match_the_issue() -> None:
    assert SIZES["standard"].events == 1_000_000
    assert SIZES["large"].events >= 10_000_000
    assert SIZES["large"].contacts >= 1_000_000
