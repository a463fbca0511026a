"""Decoding input records into EngagementEvents, or saying exactly why not."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError

from leadscore.codecs.avro import SOE_MAGIC, schema
from leadscore.errors import InvalidEvent
from leadscore.scoring import EngagementEvent


def decode_event(
    key: bytes | None,
    value: bytes | None,
    max_bytes: int,
    max_properties_bytes: int | None = None,
) -> EngagementEvent:
    """Decode a JSON or Avro single-object record and check it belongs to its key.

    A record whose Kafka key is missing or differs from ``contact_id`` is refused
    rather than scored on a partition that does not own the contact. Properties
    whose keys and values add up to more than ``max_properties_bytes`` (UTF-8) are
    refused too: rules match on them, and a huge one costs every rule that reads it.
    """
    if not value:
        raise InvalidEvent("empty_value", "record has no value")
    if len(value) > max_bytes:
        raise InvalidEvent("too_large", f"record is {len(value)} bytes; the limit is {max_bytes}")
    data = _decode_avro(value) if value.startswith(SOE_MAGIC) else _decode_json(value)
    try:
        event = EngagementEvent.model_validate(data)
    except ValidationError as exc:
        raise InvalidEvent("schema_violation", _describe(exc)) from exc
    if max_properties_bytes is not None and event.properties:
        size = sum(
            len(k.encode("utf-8", "surrogatepass")) + len(v.encode("utf-8", "surrogatepass"))
            for k, v in event.properties.items()
        )
        if size > max_properties_bytes:
            raise InvalidEvent(
                "properties_too_large",
                f"properties are {size} bytes; the limit is {max_properties_bytes}",
            )
    if key is None:
        raise InvalidEvent("key_missing", "record has no key; the key must be the contact_id")
    if key != event.contact_id.encode("utf-8"):
        raise InvalidEvent(
            "key_mismatch",
            "record key differs from contact_id; producers must key events by contact_id",
        )
    return event


def _decode_json(value: bytes) -> Any:
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("bad_json", f"not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidEvent("schema_violation", f"expected a JSON object, got {type(data).__name__}")
    return data


def _decode_avro(value: bytes) -> Any:
    event_schema = schema("EngagementEvent")
    fp = value[2:10]
    if fp != event_schema.fingerprint:
        raise InvalidEvent(
            "unknown_schema", f"Avro fingerprint {fp.hex()} is not the EngagementEvent schema's"
        )
    try:
        return event_schema.decode_body(value[10:])
    except Exception as exc:  # fastavro raises many types (EOFError, ValueError, ...) on bad bytes
        raise InvalidEvent("bad_avro", f"Avro body does not decode: {type(exc).__name__}") from exc


def _describe(exc: ValidationError) -> str:
    """Field, problem and (short) offending value, without echoing whole payloads."""
    parts = []
    for err in exc.errors()[:5]:
        field = ".".join(str(p) for p in err["loc"]) or "record"
        parts.append(f"{field}: {err['msg']}")
    return "; ".join(parts)
