"""The lead record's binary encoding (leadscore.codecs.leads)."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadscore.codecs.leads import decode_lead, encode_lead, peek_lead
from leadscore.errors import UnreadableLead
from leadscore.scoring import EngagementEvent, LeadRecord, apply_event, apply_tick, load_rules
from leadscore.scoring.rules import MS_PER_DAY

RULES = load_rules()
T0 = 1_763_888_400_000
KEY = b"ada@example.com"
TYPES = ["page_view", "email_open", "download", "signup", "demo_request", "webinar_attended"]

histories = st.lists(
    st.tuples(
        st.sampled_from(TYPES),
        st.integers(min_value=0, max_value=9 * MS_PER_DAY),
        st.dictionaries(
            st.sampled_from(["title", "company_size", "country", "seniority"]),
            st.text(max_size=30),
            max_size=3,
        ),
    ),
    min_size=1,
    max_size=30,
)


def lead_of(history: list[tuple[str, int, dict[str, str]]], account: str | None) -> LeadRecord:
    record: LeadRecord | None = None
    for i, (kind, offset, properties) in enumerate(history):
        event = EngagementEvent(
            event_id=f"id-{i}",
            contact_id=KEY.decode(),
            account_id=account,
            type=kind,
            occurred_at=T0 + offset,
            properties=properties,
        )
        record = apply_event(record, event, RULES, T0 + offset + 5).record
    assert record is not None
    return apply_tick(record, RULES, T0 + 20 * MS_PER_DAY).record


@settings(max_examples=200, deadline=None)
@given(
    histories,
    st.one_of(st.none(), st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=20)),
    st.lists(st.integers(min_value=0, max_value=2**62), max_size=20, unique=True).map(sorted),
)
def test_a_lead_record_reads_back_as_written(history, account, offsets) -> None:
    record = lead_of(history, account)
    record.change_offsets, record.change_partition = offsets, (5 if offsets else -1)
    raw = encode_lead(record)
    assert decode_lead(raw, KEY) == record
    assert peek_lead(raw) == (record.due_ms, record.stage)


@settings(max_examples=50, deadline=None)
@given(histories)
def test_a_record_written_as_json_before_the_binary_encoding_is_still_read(history) -> None:
    record = lead_of(history, "acme")
    written_before = orjson.dumps(record.to_dict())
    assert decode_lead(written_before, KEY) == record
    assert peek_lead(written_before) == (record.due_ms, record.stage)
    assert len(encode_lead(record)) < len(written_before) / 2


def test_a_record_of_an_unknown_version_is_refused_by_name() -> None:
    raw = bytearray(encode_lead(lead_of([("signup", 0, {})], None)))
    raw[0] = 9
    with pytest.raises(UnreadableLead, match="version 9"):
        decode_lead(bytes(raw), KEY)


@given(
    histories,
    st.one_of(st.none(), st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=20)),
    st.dictionaries(st.text(min_size=1, max_size=20), st.integers(0, 2**50), max_size=5),
    st.sampled_from([None, "granted", "withdrawn"]),
)
def test_identity_and_consent_read_back_and_cost_nothing_when_unset(
    history, alias, absorbed, consent
) -> None:
    record = lead_of(history, None)
    plain = encode_lead(record)
    record.alias_of, record.absorbed = alias, absorbed
    record.consent, record.consent_ms = consent, (-1 if consent is None else T0)
    raw = encode_lead(record)
    assert decode_lead(raw, KEY) == record
    if alias is None and not absorbed and consent is None:
        assert raw == plain
