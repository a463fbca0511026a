"""The per-lead history ring: bounded, newest first, never showing a stale slot."""

from __future__ import annotations

from leadscore.stream.history import History


def change(n: int) -> dict[str, object]:
    return {"event_id": f"e{n}", "delta": float(n)}


def fill(history: History, contact: str, count: int) -> None:
    for seq in range(1, count + 1):
        history.record(contact, seq, change(seq))


def test_keeps_the_latest_size_changes_newest_first() -> None:
    table: dict[bytes, bytes] = {}
    history = History(table, size=20)
    fill(history, "ada", 50)
    fill(history, "bo", 3)
    assert len(table) == 20 + 3, "each lead holds at most `size` entries"
    latest = history.latest("ada", 50, limit=20)
    assert [c["event_id"] for c in latest] == [f"e{n}" for n in range(50, 30, -1)]
    assert [c["event_id"] for c in history.latest("ada", 50, limit=3)] == ["e50", "e49", "e48"]
    assert [c["event_id"] for c in history.latest("bo", 3, limit=20)] == ["e3", "e2", "e1"]
    assert history.latest("cy", 0, limit=20) == []


def test_a_smaller_ring_over_old_entries_skips_what_it_did_not_write() -> None:
    table: dict[bytes, bytes] = {}
    fill(History(table, size=20), "ada", 12)  # seq n in slot n - 1
    smaller = History(table, size=5)
    smaller.record("ada", 13, change(13))  # slot 12 % 5 = 2, over seq 3
    # seq 12, 11, 10, 9 map to slots 1, 0, 4, 3, which hold seq 2, 1, 5, 4: not shown.
    assert smaller.latest("ada", 13, limit=5) == [change(13)]
    for seq in range(14, 18):
        smaller.record("ada", seq, change(seq))
    assert [c["event_id"] for c in smaller.latest("ada", 17, limit=5)] == [
        "e17",
        "e16",
        "e15",
        "e14",
        "e13",
    ]


def test_size_zero_keeps_nothing() -> None:
    table: dict[bytes, bytes] = {}
    history = History(table, size=0)
    fill(history, "ada", 5)
    assert table == {}
    assert history.latest("ada", 5, limit=1) == []
