"""The ``leads`` table's value: one LeadRecord per contact, in a versioned binary encoding.

Layout of version 1 (the changelog holds the same bytes):

==========  ==========================================================
byte 0      ``0x01``, the version
bytes 1-8   ``due_ms``, big-endian signed; -1 when nothing is scheduled
byte 9      n, the length of the stage name in bytes
n bytes     the stage name, UTF-8
the rest    a MessagePack array of the other fields, in ``encode_lead``'s order
==========  ==========================================================

The array's last items (identity: ``alias_of``, ``absorbed``; consent:
``consent``, ``consent_ms``) were added later; trailing ones at their defaults
are left out, so a record written before them reads the same and a lead that
never merged nor said anything about consent stays as small as it was.

The header is what rebuilding a partition's timer wheel and stage counts needs
(``peek_lead``), read without decoding the body. The contact id is the key and
is not repeated. In the body, the dedupe digests are one string of raw 8-byte
digests, and the times kept per remembered id, per hour and per update are
relative to the lead's latest event time (``ref_ms``), which keeps them small
integers: a remembered id costs 13 bytes, not the ~35 of its JSON form.

A record written by the JSON encoding used before version 1 starts with ``{``
and is still read (``decode_lead`` and ``peek_lead`` accept both); it is
rewritten in version 1 the next time its lead changes.
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec
import orjson

from leadscore.errors import UnreadableLead
from leadscore.scoring import LeadRecord
from leadscore.scoring.rules import MS_PER_HOUR

VERSION = 1
DIGEST_BYTES = 8  # leadscore.scoring.engine.event_digest
_HEADER = struct.Struct(">Bq B")
#: The added fields' defaults, in order (alias_of, absorbed, consent, consent_ms).
EXTENSION_DEFAULTS: tuple[Any, ...] = (None, {}, None, -1)
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode


def encode_lead(record: LeadRecord) -> bytes:
    ref = record.ref_ms
    ref_hour = ref // MS_PER_HOUR
    body: tuple[object, ...] = (
        record.account_id,
        record.rules_version,
        record.score,
        ref,
        ref - record.first_event_ms,
        record.event_count,
        record.updated_ms - ref,
        record.contributions,
        record.fired,
        record.action_seq,
        {ref_hour - hour: n for hour, n in record.velocity.items()},
        b"".join(record.seen),
        [ref - t for t in record.seen.values()],
        ref - record.dedupe_floor_ms,
        record.fit,
        record.fit_contributions,
        record.traits,
        record.cap_credits,
        record.disqualified_ms,
        record.disqualified_by,
        record.requalified_ms,
        record.assessed_ms - ref,
        record.change_partition,
        _back_from_last(record.change_offsets),
    )
    extension = [record.alias_of, record.absorbed, record.consent, record.consent_ms]
    while extension and extension[-1] == EXTENSION_DEFAULTS[len(extension) - 1]:
        extension.pop()
    body = (*body, *extension)
    stage = record.stage.encode("utf-8")
    due = -1 if record.due_ms is None else record.due_ms
    return _HEADER.pack(VERSION, due, len(stage)) + stage + _encode(body)


def decode_lead(raw: bytes, key: bytes) -> LeadRecord:
    """The record stored under ``key`` (the contact id, which the record does not repeat)."""
    if raw[:1] == b"{":
        return LeadRecord.from_dict(orjson.loads(raw))
    due, stage, start = _header(raw)
    fields: list[Any] = _decode(raw[start:])
    alias_of, absorbed, consent, consent_ms = [
        *fields[24:],
        *EXTENSION_DEFAULTS[len(fields) - 24 :],
    ]
    (
        account_id,
        rules_version,
        score,
        ref,
        first_back,
        event_count,
        updated_ahead,
        contributions,
        fired,
        action_seq,
        velocity,
        digests,
        seen_back,
        floor_back,
        fit,
        fit_contributions,
        traits,
        cap_credits,
        disqualified_ms,
        disqualified_by,
        requalified_ms,
        assessed_ahead,
        change_partition,
        change_offsets,
    ) = fields[:24]
    ref_hour = ref // MS_PER_HOUR
    return LeadRecord(
        contact_id=key.decode("utf-8"),
        account_id=account_id,
        stage=stage,
        rules_version=rules_version,
        score=float(score),
        ref_ms=ref,
        first_event_ms=ref - first_back,
        event_count=event_count,
        updated_ms=ref + updated_ahead,
        contributions={k: float(v) for k, v in contributions.items()},
        fired=fired,
        action_seq=action_seq,
        velocity={ref_hour - back: n for back, n in velocity.items()},
        seen={
            digests[i * DIGEST_BYTES : (i + 1) * DIGEST_BYTES]: ref - back
            for i, back in enumerate(seen_back)
        },
        dedupe_floor_ms=ref - floor_back,
        fit=float(fit),
        fit_contributions={k: float(v) for k, v in fit_contributions.items()},
        traits={name: (t, value) for name, (t, value) in traits.items()},
        cap_credits={
            cap: [(t, float(p)) for t, p in grants] for cap, grants in cap_credits.items()
        },
        disqualified_ms=disqualified_ms,
        disqualified_by=disqualified_by,
        requalified_ms=requalified_ms,
        assessed_ms=ref + assessed_ahead,
        due_ms=due,
        change_partition=change_partition,
        change_offsets=_from_last(change_offsets),
        alias_of=alias_of,
        absorbed=absorbed,
        consent=consent,
        consent_ms=consent_ms,
    )


def _back_from_last(offsets: list[int]) -> list[int]:
    """[last, last - each earlier one...]: small numbers after the first."""
    if not offsets:
        return []
    last = offsets[-1]
    return [last, *(last - o for o in offsets[:-1])]


def _from_last(packed: list[int]) -> list[int]:
    if not packed:
        return []
    last = packed[0]
    return [*(last - back for back in packed[1:]), last]


def peek_lead(raw: bytes) -> tuple[int | None, str]:
    """A stored record's due time and stage, without decoding the rest."""
    if raw[:1] == b"{":
        data = orjson.loads(raw)
        return data.get("due_ms"), data["stage"]
    due, stage, _ = _header(raw)
    return due, stage


def _header(raw: bytes) -> tuple[int | None, str, int]:
    try:
        version, due, length = _HEADER.unpack_from(raw)
    except struct.error as error:
        raise UnreadableLead(f"a lead record of {len(raw)} bytes has no header") from error
    if version != VERSION:
        raise UnreadableLead(
            f"a lead record in encoding version {version}; this worker reads {VERSION} "
            "(and JSON): was it written by a newer leadscore?"
        )
    start = _HEADER.size + length
    return (None if due < 0 else due), raw[_HEADER.size : start].decode("utf-8"), start
