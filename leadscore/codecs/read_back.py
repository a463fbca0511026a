"""Reading leadscore's own output records back (for `leadscore tail` and tests)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

from leadscore.codecs.avro import SCHEMA_FILES, SOE_MAGIC, schema
from leadscore.codecs.connect import is_envelope
from leadscore.codecs.dlq import HEADER_PREFIX
from leadscore.errors import InvalidRecord


def decode_output(value: bytes | None) -> Any:
    """Decode a record leadscore wrote, in any output format (None for a tombstone)."""
    if value is None:
        return None
    if value.startswith(SOE_MAGIC):
        fp = value[2:10]
        for name in SCHEMA_FILES:
            if schema(name).fingerprint == fp:
                record = schema(name).decode_body(value[10:])
                return {k: _ms(v) for k, v in record.items()}
        raise InvalidRecord("unknown_schema", f"unknown Avro fingerprint {fp.hex()}")
    decoded = orjson.loads(value)
    return decoded["payload"] if is_envelope(decoded) else decoded


def _ms(value: Any) -> Any:
    return int(value.timestamp() * 1000) if isinstance(value, datetime) else value


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%H:%M:%S")


def describe(kind: str, r: dict[str, Any]) -> str:
    """One readable line per record."""
    if kind == "actions":
        why = ", ".join(f"{x['rule_id']} {round(x['points'], 1):g}" for x in r["reasons"][:4])
        return (
            f"{_clock(r['emitted_at'])} {r['contact_id']:<18} {r['kind']:<17} {r['name']:<10} "
            f"score {r['score']:6.1f}  {r['previous_stage']} -> {r['stage']}  ({why})"
        )
    if kind == "lead-state":
        return (
            f"{r['contact_id']:<18} score {r['score']:6.1f} {r['stage']:<9} "
            f"velocity {r['velocity']:<4} risk {r['risk']:<6} next {r['next_action']}"
        )
    if kind == "score-changes":
        return (
            f"{r['contact_id']:<18} {r['event_type']:<18} "
            f"{r['old_score']:6.1f} -> {r['new_score']:6.1f} "
            f"(+{r['delta']:g}, decay -{r['decay_applied']:g})"
        )
    if kind == "account-state":
        top = ", ".join(c["contact_id"] for c in r["top_contacts"][:3])
        return (
            f"{r['account_id']:<18} engagement {r['current_score']:7.1f} {r['stage']:<9} "
            f"contacts {r['contacts']} engaged {r['engaged_contacts']} (top: {top})"
        )
    if kind == "account-actions":
        top = ", ".join(f"{c['contact_id']} {c['score']:g}" for c in r["top_contacts"][:3])
        return (
            f"{_clock(r['emitted_at'])} {r['account_id']:<18} {r['kind']:<26} {r['name']:<14} "
            f"engagement {r['score']:6.1f}  {r['previous_stage']} -> {r['stage']}  ({top})"
        )
    if kind == "assignments":
        return (
            f"{_clock(r['assigned_at'])} {r['contact_id']:<18} -> {r['owner']:<16} "
            f"team {r['team']:<12} {r['strategy']:<15} ({r['action_kind']}:{r['action_name']})"
        )
    return orjson.dumps(r).decode()


def describe_dead_letter(headers: Iterable[tuple[str, str | bytes | None]]) -> str:
    """One line per dead-lettered record: why, and where it came from."""
    h = {k: v.decode(errors="replace") if isinstance(v, bytes) else (v or "") for k, v in headers}
    p = HEADER_PREFIX
    endpoint = f"[{h[p + 'endpoint']}] " if p + "endpoint" in h else ""
    return (
        f"{endpoint}{h.get(p + 'error.reason')}: {h.get(p + 'error.message')} "
        f"(from {h.get(p + 'source.topic')}/{h.get(p + 'source.partition')}"
        f"@{h.get(p + 'source.offset')})"
    )
