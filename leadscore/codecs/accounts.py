"""The ``accounts`` table's keys and values, and the account-updates topic's records.

The table holds two kinds of record, told apart by the key's first bytes (ids
cannot contain control characters, so ``\\x00`` separates unambiguously):

==============================  ===========================================
``a\\x00<account id>``           the account (``AccountRecord``)
``m\\x00<account id>\\x00<id>``   one contact's last share (``Member``)
==============================  ===========================================

Values are MessagePack arrays led by a version byte. Records of the
account-updates topic are JSON (``Share.to_dict``), keyed by account id, so
they land on the account's murmur2 partition; a tick for a partition's due
accounts carries the ``leadscore.tick`` header instead.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
import orjson

from leadscore.errors import InvalidEvent
from leadscore.scoring.accounts import AccountRecord, Member, Share, Tracked
from leadscore.scoring.engine import MAX_TRAIT_CHARS
from leadscore.scoring.events import id_problem

VERSION = 1
TICK_HEADER = "leadscore.tick"
#: The dead-letter reason of an account-updates record the worker cannot read.
UNREADABLE_SHARE = "invalid_account_update"
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode


def account_key(account_id: str) -> bytes:
    return b"a\x00" + account_id.encode("utf-8")


def member_key(account_id: str, contact_id: str) -> bytes:
    return b"m\x00" + account_id.encode("utf-8") + b"\x00" + contact_id.encode("utf-8")


def is_account_key(key: bytes) -> bool:
    return key.startswith(b"a\x00")


class _StoredAccount(msgspec.Struct, array_like=True):
    """An account record's stored layout (decoded in one typed pass)."""

    version: int
    account_id: str
    stage: str
    rules_version: str
    score: float
    ref_ms: int
    contacts: int
    fired: list[str]
    action_seq: dict[str, int]
    tracked: dict[str, Tracked]
    overflowed: bool
    assessed_ms: int
    updated_ms: int
    due_ms: int  # -1: nothing scheduled


_decode_account = msgspec.msgpack.Decoder(_StoredAccount).decode


def encode_account(record: AccountRecord) -> bytes:
    return _encode(
        _StoredAccount(
            VERSION,
            record.account_id,
            record.stage,
            record.rules_version,
            record.score,
            record.ref_ms,
            record.contacts,
            record.fired,
            record.action_seq,
            record.tracked,
            record.overflowed,
            record.assessed_ms,
            record.updated_ms,
            -1 if record.due_ms is None else record.due_ms,
        )
    )


def decode_account(raw: bytes) -> AccountRecord:
    v = _decode_account(raw)
    return AccountRecord(
        account_id=v.account_id,
        stage=v.stage,
        rules_version=v.rules_version,
        score=v.score,
        ref_ms=v.ref_ms,
        contacts=v.contacts,
        fired=v.fired,
        action_seq=v.action_seq,
        tracked=v.tracked,
        overflowed=v.overflowed,
        assessed_ms=v.assessed_ms,
        updated_ms=v.updated_ms,
        due_ms=None if v.due_ms < 0 else v.due_ms,
    )


def encode_member(member: Member) -> bytes:
    return _encode([VERSION, member.score, member.ref_ms, member.version, member.persona])


def decode_member(raw: bytes) -> Member:
    v: list[Any] = _decode(raw)
    return Member(v[1], v[2], v[3], v[4])


def encode_entry(value: AccountRecord | Member) -> bytes:
    return encode_account(value) if isinstance(value, AccountRecord) else encode_member(value)


def decode_share(key: bytes | None, value: bytes | None) -> Share:
    """An account-updates record, or InvalidEvent saying why it cannot be one."""
    try:
        share = Share.from_dict(orjson.loads(value or b""))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise InvalidEvent(UNREADABLE_SHARE, f"not an account update: {error}") from None
    if key is None or key != share.account_id.encode("utf-8"):
        raise InvalidEvent(UNREADABLE_SHARE, "the record's key is not its account id")
    # The ids end up in account records and states: the rule events are checked with, so
    # no record written to this topic can make an output too large to send.
    for field, text in (("account_id", share.account_id), ("contact_id", share.contact_id)):
        problem = id_problem(text)
        if problem:
            raise InvalidEvent(UNREADABLE_SHARE, f"{field} {problem}")
    if share.persona is not None and len(share.persona) > MAX_TRAIT_CHARS:
        raise InvalidEvent(UNREADABLE_SHARE, f"persona is longer than {MAX_TRAIT_CHARS} characters")
    if not math.isfinite(share.score):
        raise InvalidEvent(UNREADABLE_SHARE, "score is not a finite number")
    return share
