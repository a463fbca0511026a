"""A lead's history is where its score changes landed (leadscore.stream.history.keep_change)."""

from __future__ import annotations

from leadscore.codecs.leads import decode_lead, encode_lead
from leadscore.scoring import LeadRecord
from leadscore.stream.history import keep_change


def lead() -> LeadRecord:
    return LeadRecord(contact_id="ada", account_id=None, stage="cold", rules_version="v1")


def test_keeps_the_latest_size_offsets_oldest_first() -> None:
    record = lead()
    for offset in range(100, 150):
        keep_change(record, 3, offset, size=20)
    assert record.change_partition == 3
    assert record.change_offsets == list(range(130, 150))


def test_the_offsets_survive_the_lead_record_s_encoding() -> None:
    record = lead()
    for offset in (7, 9_000_000_000, 9_000_000_001):
        keep_change(record, 1, offset, size=20)
    assert decode_lead(encode_lead(record), b"ada").change_offsets == [
        7,
        9_000_000_000,
        9_000_000_001,
    ]


def test_a_change_on_another_partition_starts_the_history_again() -> None:
    record = lead()
    keep_change(record, 1, 10, size=20)
    keep_change(record, 4, 2, size=20)  # the topic was given more partitions
    assert (record.change_partition, record.change_offsets) == (4, [2])


def test_size_zero_keeps_nothing() -> None:
    record = lead()
    keep_change(record, 1, 10, size=0)
    assert record.change_offsets == []
