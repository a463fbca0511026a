"""Reading leadscore's own output records back (for `leadscore tail` and tests)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from leadscore.codecs.avro import SCHEMA_FILES, SOE_MAGIC, schema


def decode_output(value: bytes | None) -> Any:
    """Decode a JSON or Avro single-object record written by leadscore (None for a tombstone)."""
    if value is None:
        return None
    if value.startswith(SOE_MAGIC):
        fp = value[2:10]
        for name in SCHEMA_FILES:
            if schema(name).fingerprint == fp:
                record = schema(name).decode_body(value[10:])
                return {k: _ms(v) for k, v in record.items()}
        raise ValueError(f"unknown Avro fingerprint {fp.hex()}")
    return orjson.loads(value)


def _ms(value: Any) -> Any:
    return int(value.timestamp() * 1000) if isinstance(value, datetime) else value


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%H:%M:%S")


def describe(kind: str, r: dict[str, Any]) -> str:
    """One readable line per record."""
    if kind == "actions":
        why = ", ".join(f"{x['rule_id']} {x['points']:g}" for x in r["reasons"][:4])
        return (f"{_clock(r['emitted_at'])} {r['contact_id']:<18} {r['kind']:<17} {r['name']:<10} "
                f"score {r['score']:6.1f}  {r['previous_stage']} -> {r['stage']}  ({why})")
    if kind == "lead-state":
        return (f"{r['contact_id']:<18} score {r['score']:6.1f} {r['stage']:<9} velocity {r['velocity']:<4} "
                f"risk {r['risk']:<6} next {r['next_action']}")
    if kind == "score-changes":
        return (f"{r['contact_id']:<18} {r['event_type']:<18} {r['old_score']:6.1f} -> {r['new_score']:6.1f} "
                f"(+{r['delta']:g}, decay -{r['decay_applied']:g})")
    return orjson.dumps(r).decode()
