"""Input decoding: every bad record gets a reason; JSON and Avro both decode."""

from __future__ import annotations

import orjson
import pytest

from leadscore.codecs.avro import SOE_MAGIC, load_all, schema
from leadscore.codecs.connect import connect_schema
from leadscore.codecs.events import decode_event
from leadscore.codecs.outputs import encoder
from leadscore.codecs.read_back import decode_output
from leadscore.errors import InvalidEvent
from leadscore.scoring import EngagementEvent, apply_event, load_rules, snapshot
from leadscore.sinks.routing_rules import RoutingConfig, decide

GOOD = {"event_id": "e1", "contact_id": "c1", "type": "signup", "occurred_at": 1_763_888_400_000}


def avro_event(**overrides: object) -> bytes:
    body = {**GOOD, "account_id": None, "anonymous_id": None, "source": None, "properties": {}}
    return schema("EngagementEvent").encode({**body, **overrides})


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"c1", b"", "empty_value"),
        (b"c1", b"{oops", "bad_json"),
        (b"c1", b"[1, 2]", "schema_violation"),
        (b"c1", orjson.dumps({**GOOD, "event_id": ""}), "schema_violation"),
        (b"c1", orjson.dumps({**GOOD, "occurred_at": "2025-11-23T09:00:00"}), "schema_violation"),
        (None, orjson.dumps(GOOD), "key_missing"),
        (b"c2", orjson.dumps(GOOD), "key_mismatch"),
        (b"c1", SOE_MAGIC + b"\x01" * 8 + b"body", "unknown_schema"),
        (b"c1", avro_event()[:12], "bad_avro"),
        (b"c1", b"{" + b" " * 2000 + b"}", "too_large"),
    ],
)
def test_bad_input_is_refused_with_a_reason(key: bytes | None, value: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_event(key, value, max_bytes=1_000)
    assert info.value.reason == reason
    assert str(info.value)


def test_json_and_avro_decode_to_the_same_event() -> None:
    from_json = decode_event(b"c1", orjson.dumps(GOOD), max_bytes=10_000)
    from_avro = decode_event(b"c1", avro_event(), max_bytes=10_000)
    assert from_json == from_avro == EngagementEvent.model_validate(GOOD)


ROUTING = RoutingConfig.model_validate(
    {
        "actions": ["*"],
        "teams": [{"name": "t", "members": [{"id": "rep"}], "overflow_queue": "q"}],
        "rules": [{"team": "t"}],
    }
)


def test_every_schema_loads_and_outputs_round_trip_through_avro() -> None:
    schemas = load_all()
    assert set(schemas) == {
        "EngagementEvent",
        "LeadAction",
        "LeadState",
        "ScoreChange",
        "Assignment",
        "AccountState",
        "AccountAction",
    }
    event = EngagementEvent.model_validate({**GOOD, "type": "demo_request"})
    applied = apply_event(None, event, load_rules(), now_ms=GOOD["occurred_at"] + 3)
    action = applied.actions[0].to_dict()
    assert decode_output(schemas["LeadAction"].encode(action)) == action
    assert applied.change is not None
    change = applied.change.to_dict()
    assert decode_output(schemas["ScoreChange"].encode(change)) == change
    assignment = decide({**action, "kind": "threshold_crossed"}, ROUTING, {})
    assert assignment is not None
    encoded = schemas["Assignment"].encode(assignment.assignment)
    assert decode_output(encoded) == assignment.assignment


CONNECT_TYPES = {
    "int8",
    "int16",
    "int32",
    "int64",
    "float",
    "double",
    "boolean",
    "string",
    "bytes",
    "array",
    "map",
    "struct",
}


def _connect_types(schema: dict) -> set[str]:
    found = {schema["type"]}
    for field in schema.get("fields", []):
        found |= _connect_types(field)
    for part in ("items", "keys", "values"):
        if part in schema:
            found |= _connect_types(schema[part])
    return found


def test_json_schema_output_is_connects_envelope_and_reads_back() -> None:
    event = EngagementEvent.model_validate({**GOOD, "type": "demo_request"})
    applied = apply_event(None, event, load_rules(), now_ms=GOOD["occurred_at"] + 3)
    state = snapshot(applied.record, load_rules(), GOOD["occurred_at"] + 3).to_dict()
    for name, record in [("LeadState", state), ("LeadAction", applied.actions[0].to_dict())]:
        encoded = encoder(name, "json_schema")(record)
        envelope = orjson.loads(encoded)
        assert set(envelope) == {"schema", "payload"}
        assert envelope["schema"]["type"] == "struct"
        assert _connect_types(envelope["schema"]) <= CONNECT_TYPES, "JsonConverter's type names"
        assert [f["field"] for f in envelope["schema"]["fields"]] == list(record)
        assert decode_output(encoded) == record
    fields = {f["field"]: f for f in connect_schema("LeadState")["fields"]}
    assert fields["account_id"]["optional"] is True
    assert fields["last_event_at"]["name"] == "org.apache.kafka.connect.data.Timestamp"
    assert fields["risk"]["type"] == "string", "an Avro enum is a Connect string"


def test_tail_lines_for_assignments_and_sink_dead_letters() -> None:
    from leadscore.codecs.read_back import describe, describe_dead_letter

    event = EngagementEvent.model_validate({**GOOD, "type": "demo_request"})
    action = apply_event(None, event, load_rules(), now_ms=GOOD["occurred_at"] + 3).actions[0]
    decision = decide({**action.to_dict(), "kind": "threshold_crossed"}, ROUTING, {})
    assert decision is not None
    line = describe("assignments", decision.assignment)
    assert f"{action.contact_id} " in line
    assert "-> rep" in line
    assert "team t" in line
    assert "round_robin" in line
    headers = [
        ("leadscore.endpoint", b"crm"),
        ("leadscore.error.reason", b"delivery_failed"),
        ("leadscore.error.message", b"HTTP 500"),
        ("leadscore.source.topic", b"leadscore.actions"),
        ("leadscore.source.partition", b"2"),
        ("leadscore.source.offset", b"41"),
    ]
    assert describe_dead_letter(headers) == (
        "[crm] delivery_failed: HTTP 500 (from leadscore.actions/2@41)"
    )
