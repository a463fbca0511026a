"""Kafka Connect's JSON-with-schema envelope, derived from the Avro schemas in schemas/.

With ``LEADSCORE_OUTPUT_FORMAT=json_schema`` each output record is
``{"schema": <Connect schema>, "payload": <the record>}``: what Kafka
Connect's JsonConverter reads with ``value.converter.schemas.enable=true``.
Sink connectors that need typed fields (JDBC, for example) get them from
the schema without a Schema Registry. Avro ``timestamp-millis`` fields become
Connect ``Timestamp`` (int64 milliseconds), enums become strings, ``["null", T]``
unions become optional fields.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from leadscore.codecs.avro import SCHEMA_DIR, SCHEMA_FILES

PRIMITIVES = {
    "string": "string",
    "boolean": "boolean",
    "int": "int32",
    "long": "int64",
    "float": "float",
    "double": "double",
    "bytes": "bytes",
}
TIMESTAMP = "org.apache.kafka.connect.data.Timestamp"


def _connect(avro: Any, named: dict[str, Any], optional: bool = False) -> dict[str, Any]:
    if isinstance(avro, list):  # a union: only ["null", T] is used in our schemas
        others = [t for t in avro if t != "null"]
        if len(others) != 1:
            raise ValueError(f"unsupported union {avro}")
        return _connect(others[0], named, optional="null" in avro)
    if isinstance(avro, str):
        if avro in PRIMITIVES:
            return {"type": PRIMITIVES[avro], "optional": optional}
        return {**named[avro], "optional": optional}
    kind = avro["type"]
    if avro.get("logicalType") == "timestamp-millis":
        return {"type": "int64", "name": TIMESTAMP, "version": 1, "optional": optional}
    if kind == "record":
        struct = {
            "type": "struct",
            "name": f"{avro.get('namespace', 'io.leadscore')}.{avro['name']}",
            "fields": [{"field": f["name"], **_connect(f["type"], named)} for f in avro["fields"]],
        }
        named[avro["name"]] = struct
        return {**struct, "optional": optional}
    if kind == "enum":
        named[avro["name"]] = {"type": "string"}
        return {"type": "string", "optional": optional}
    if kind == "array":
        return {"type": "array", "items": _connect(avro["items"], named), "optional": optional}
    if kind == "map":
        return {
            "type": "map",
            "keys": {"type": "string", "optional": False},
            "values": _connect(avro["values"], named),
            "optional": optional,
        }
    return _connect(kind, named, optional)


@cache
def connect_schema(record_name: str) -> dict[str, Any]:
    """The Connect schema of one of leadscore's record types."""
    avro = json.loads((SCHEMA_DIR / SCHEMA_FILES[record_name]).read_text(encoding="utf-8"))
    return _connect(avro, {})


def is_envelope(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"schema", "payload"}
