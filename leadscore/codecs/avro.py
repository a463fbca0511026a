"""Avro schemas from schemas/ and Avro single-object encoding.

Single-object encoding: 0xC3 0x01, the schema's 8-byte CRC-64-AVRO fingerprint
(little-endian), then the Avro binary body. The fingerprint says which schema
wrote the record, so a reader can refuse what it does not know.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
SOE_MAGIC = b"\xc3\x01"

SCHEMA_FILES = {
    "EngagementEvent": "engagement_event.avsc",
    "LeadAction": "lead_action.avsc",
    "LeadState": "lead_state.avsc",
    "ScoreChange": "score_change.avsc",
    "Assignment": "assignment.avsc",
    "AccountState": "account_state.avsc",
    "AccountAction": "account_action.avsc",
}


@dataclass(frozen=True)
class AvroSchema:
    name: str
    parsed: Any
    fingerprint: bytes  # 8 bytes, little-endian CRC-64-AVRO

    def encode(self, record: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(SOE_MAGIC)
        buf.write(self.fingerprint)
        fastavro.schemaless_writer(buf, self.parsed, record)
        return buf.getvalue()

    def decode_body(self, body: bytes) -> Any:
        return fastavro.schemaless_reader(io.BytesIO(body), self.parsed, None)


@cache
def schema(name: str) -> AvroSchema:
    """Load, validate and fingerprint one of the schemas in schemas/."""
    raw = json.loads((SCHEMA_DIR / SCHEMA_FILES[name]).read_text(encoding="utf-8"))
    parsed = fastavro.parse_schema(raw)
    hex_fp = fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO")
    # fastavro gives the fingerprint's bytes little-endian, as single-object encoding wants them.
    return AvroSchema(name, parsed, bytes.fromhex(hex_fp))


def load_all() -> dict[str, AvroSchema]:
    """Load every schema (done at start-up, so a broken schema stops the worker at once)."""
    return {name: schema(name) for name in SCHEMA_FILES}
