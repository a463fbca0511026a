"""The ``leads`` table's value: a LeadRecord as JSON bytes (the changelog holds the same)."""

from __future__ import annotations

import orjson

from leadscore.scoring import LeadRecord


def encode_lead(record: LeadRecord) -> bytes:
    return orjson.dumps(record.to_dict())


def decode_lead(raw: bytes) -> LeadRecord:
    return LeadRecord.from_dict(orjson.loads(raw))
