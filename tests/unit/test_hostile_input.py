"""Hostile input: whatever the bytes, the decoder scores them or refuses them with a reason.

Issue 8's hostile-input property: random bytes, truncated or corrupted Avro, JSON of
any shape (deeply nested, wrong types, huge values, unicode edge cases), timestamps
far in the future or before 1970. Every input either decodes to an event that the
scoring core applies without error, or raises InvalidEvent with a known reason.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadscore.codecs.avro import schema
from leadscore.codecs.events import decode_event
from leadscore.config import Settings
from leadscore.errors import InvalidEvent
from leadscore.scoring import apply_event, load_rules
from tests.unit.test_codecs import GOOD, avro_event

RULES = load_rules()
# The defaults of LEADSCORE_MAX_EVENT_BYTES and LEADSCORE_MAX_PROPERTIES_BYTES.
LIMIT = Settings().max_event_bytes
PROPERTIES_LIMIT = Settings().max_properties_bytes
REASONS = {
    "empty_value",
    "too_large",
    "properties_too_large",
    "bad_json",
    "bad_avro",
    "unknown_schema",
    "schema_violation",
    "key_missing",
    "key_mismatch",
}
NOW = 1_763_888_400_000

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
fields = st.sampled_from(sorted({*GOOD, "properties", "account_id", "source"}))


def scored_or_refused(key: bytes | None, value: bytes) -> str:
    """'scored', or the reason it was refused; anything else raised fails the test."""
    try:
        event = decode_event(key, value, LIMIT, PROPERTIES_LIMIT)
    except InvalidEvent as error:
        refused = error
    else:
        refused = None
    if refused is not None:
        assert refused.reason in REASONS, refused.reason
        assert str(refused)
        return refused.reason
    applied = apply_event(None, event, RULES, NOW)
    assert applied.status in {"scored", "duplicate", "too_late"}
    return "scored"


@given(st.binary(max_size=300), st.one_of(st.none(), st.binary(max_size=20)))
def test_random_bytes(value: bytes, key: bytes | None) -> None:
    scored_or_refused(key, value)


@given(st.binary(max_size=300))
def test_random_bytes_after_the_avro_header(body: bytes) -> None:
    header = avro_event()[:10]
    assert scored_or_refused(b"c1", header + body) in {"scored", "bad_avro", "schema_violation"}


@given(st.integers(min_value=0), st.binary(max_size=4))
def test_truncated_or_corrupted_avro(cut: int, noise: bytes) -> None:
    whole = avro_event(properties={"url": "/pricing", "campaign": "q4"})
    cut %= len(whole)
    scored_or_refused(b"c1", whole[:cut] + noise)


@given(fields, json_values)
def test_any_json_value_in_any_field(field: str, value: Any) -> None:
    record = {**GOOD, field: value}
    scored_or_refused(b"c1", json.dumps(record).encode())


@given(json_values)
def test_any_json_document(document: Any) -> None:
    scored_or_refused(b"c1", json.dumps(document).encode())


@given(st.dictionaries(st.text(), st.text(), max_size=20))
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_unicode_properties_score(properties: dict[str, str]) -> None:
    # Lone surrogates cannot be UTF-8 encoded: JSON escapes them, orjson refuses them.
    value = json.dumps({**GOOD, "properties": properties}).encode()
    assert scored_or_refused(b"c1", value) in {"scored", "bad_json"}


def test_deep_nesting_is_refused_not_a_recursion_error() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000  # under the size limit; orjson stops at depth 1024
    assert scored_or_refused(b"c1", deep) == "bad_json"
    assert scored_or_refused(b"c1", b'{"properties": ' + b"[" * 5_000 + b"]" * 5_000 + b"}") in {
        "bad_json",
        "schema_violation",
    }


def test_ten_megabyte_properties_are_refused_by_size() -> None:
    value = orjson.dumps({**GOOD, "properties": {"blob": "x" * 10_000_000}})
    assert scored_or_refused(b"c1", value) == "too_large"


def test_large_properties_in_a_record_under_the_size_limit_are_refused() -> None:
    for properties in ({"blob": "x" * 200_000}, {f"k{i}": "é" * 100 for i in range(400)}):
        value = orjson.dumps({**GOOD, "properties": properties})
        assert len(value) < LIMIT
        assert scored_or_refused(b"c1", value) == "properties_too_large"
        avro = schema("EngagementEvent").encode(
            {
                **GOOD,
                "account_id": None,
                "anonymous_id": None,
                "source": None,
                "properties": properties,
            }
        )
        assert scored_or_refused(b"c1", avro) == "properties_too_large"
    just_under = {"b": "x" * (PROPERTIES_LIMIT - 1)}
    assert scored_or_refused(b"c1", orjson.dumps({**GOOD, "properties": just_under})) == "scored"


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_any_timestamp_is_scored_or_refused(occurred_at: int) -> None:
    reason = scored_or_refused(b"c1", orjson.dumps({**GOOD, "occurred_at": occurred_at}))
    assert reason == ("scored" if 0 <= occurred_at <= 253_402_300_799_999 else "schema_violation")


def test_the_avro_schema_refuses_what_json_refuses() -> None:
    before_1970 = schema("EngagementEvent").encode(
        {
            **GOOD,
            "occurred_at": -1,
            "account_id": None,
            "anonymous_id": None,
            "source": None,
            "properties": {},
        }
    )
    assert scored_or_refused(b"c1", before_1970) == "schema_violation"
