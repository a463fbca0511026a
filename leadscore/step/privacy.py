"""Erasure: the request, the receipt, and the suppression list's entries.

An erase request is a record of the privacy topic keyed by the contact id:
``{"request_id", "contact_id", "kind": "erase", "requested_at"}``. Its
contact's partition clears the lead (and, through the hand-off topic, every
contact merged into it), and keeps an entry in the suppression list so later
events of those ids are dropped until a consent event grants consent again.
Neither the suppression entry nor the receipt holds the id: both name the
contact by ``contact_hash``, an HMAC-SHA256 of the id under
``LEADSCORE_PRIVACY_KEY``.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import orjson

from leadscore.errors import InvalidEvent, LeadscoreError
from leadscore.scoring import LeadRecord
from leadscore.scoring.events import id_problem
from leadscore.scoring.merge import ALIAS_STAGE

#: Suppression entries live in the leads table under keys no contact id can have
#: (ids never hold control characters).
SUPPRESSED_PREFIX = b"\x00erased:"


class PrivacyKeyMissing(LeadscoreError):
    """An erase request arrived and LEADSCORE_PRIVACY_KEY is not set: the worker stops
    (configuration, not the record, is at fault); the request stays unprocessed."""


@dataclass(frozen=True, slots=True)
class EraseRequest:
    request_id: str
    contact_id: str
    requested_at: int

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "request_id": self.request_id,
                "contact_id": self.contact_id,
                "kind": "erase",
                "requested_at": self.requested_at,
            }
        )


def read_request(key: bytes | None, value: bytes | None, keyed: bool = True) -> EraseRequest:
    """An erase request, or InvalidEvent (``invalid_privacy_request``) saying why not.

    ``keyed``: as read from the privacy topic, whose key must be the contact id (one
    handed on to another contact's partition is keyed by that contact)."""

    def bad(why: str) -> InvalidEvent:
        return InvalidEvent("invalid_privacy_request", why)

    try:
        data: Any = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        raise bad("not JSON") from None
    if not isinstance(data, dict) or data.get("kind") != "erase":
        raise bad('not a request of kind "erase"')
    contact, request_id, at = (
        data.get("contact_id"),
        data.get("request_id"),
        data.get("requested_at"),
    )
    if not isinstance(contact, str) or id_problem(contact):
        raise bad("contact_id is missing or not an id")
    if keyed and key != contact.encode("utf-8"):
        raise bad("the record's key differs from contact_id")
    if not isinstance(request_id, str) or id_problem(request_id):
        raise bad("request_id is missing or not an id")
    if not isinstance(at, int) or isinstance(at, bool):
        raise bad("requested_at is not epoch milliseconds")
    return EraseRequest(request_id, contact, at)


def contact_hash(key: bytes, contact_id: str) -> str:
    """The keyed hash that names an erased contact (hex, 32 characters)."""
    return hmac.new(key, contact_id.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def suppressed_key(key: bytes, contact_id: str) -> bytes:
    return SUPPRESSED_PREFIX + contact_hash(key, contact_id).encode()


def suppression_entry(
    key: bytes, contact_id: str, request: EraseRequest, version: str
) -> LeadRecord:
    """The suppression list's entry for an erased id: a frozen, empty record under a key
    made of the id's keyed hash (no stage: it is counted as no lead)."""
    return LeadRecord(
        contact_id=suppressed_key(key, contact_id).decode(),
        account_id=None,
        stage=ALIAS_STAGE,
        rules_version=version,
        consent="withdrawn",
        consent_ms=request.requested_at,
    )


def receipt(
    request: EraseRequest, key: bytes, lead: bool, aliases: int, processed_at: int
) -> bytes:
    """What an erasure cleared, where and when; the contact only as its keyed hash."""
    return orjson.dumps(
        {
            "request_id": request.request_id,
            "contact_hash": contact_hash(key, request.contact_id),
            "kind": "erase",
            "requested_at": request.requested_at,
            "processed_at": processed_at,
            "cleared": {
                "lead": lead,  # the lead record (table and changelog) and its lead-state
                "merged_ids": aliases,  # contacts merged into it, cleared with it
            },
            "suppressed_ids": 1 + aliases,
            "kept": "append-only topics (events, score-changes, actions, dlq) until retention",
        }
    )
