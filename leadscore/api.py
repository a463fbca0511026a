"""The lead query API's contract, free of any web framework: ids, errors, auth, bodies.

Every error body has one shape: ``{"error": {"code": ..., "message": ...}}``.
"""

from __future__ import annotations

import hmac
import re
from typing import Any

from leadscore.errors import ApiError
from leadscore.scoring import LeadRecord, Rules, snapshot
from leadscore.scoring.engine import top_reasons
from leadscore.scoring.events import id_problem, iso_to_ms
from leadscore.scoring.records import out


def check_contact_id(contact_id: str) -> str:
    """The contact id from a path, or ApiError 400 when it cannot be one."""
    problem = id_problem(contact_id)
    if problem:
        raise ApiError(400, "invalid_contact_id", f"contact id {problem}")
    return contact_id


MAX_LIMIT = 1000  # the largest history a lead can keep (LEADSCORE_HISTORY_SIZE)
_DIGITS = re.compile(r"[0-9]{1,15}")  # ASCII only: str.isdigit() also takes "²" and "٣"
_MAX_AT_CHARS = 64


def check_token(expected: str | None, authorization: str | None) -> None:
    """ApiError 401 unless ``authorization`` is ``Bearer <expected>`` (no token: open).

    Compared as bytes: a header with characters beyond ASCII is a wrong token, not a
    server error (``hmac.compare_digest`` refuses non-ASCII text).
    """
    if expected is None:
        return
    scheme, _, given = (authorization or "").partition(" ")
    presented = given.strip().encode("utf-8", "surrogateescape")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented, expected.encode()):
        raise ApiError(401, "unauthorized", "a valid bearer token is required")


def check_at(raw: str | None, record: LeadRecord, now_ms: int) -> int:
    """The time to decay a lead's score to: ``?at=`` (ISO-8601 with offset, or epoch ms) or now.

    Decay is a pure function of time, so a later time answers "where will this lead
    stand then, with no new events". A time before the lead's latest event cannot be
    answered from its current record (the events after it are already counted).
    """
    if raw is None:
        return now_ms
    wrong = ApiError(
        400,
        "invalid_at",
        "at must be epoch milliseconds or ISO-8601 with a UTC offset, "
        "e.g. 2026-11-23T09:00:00+01:00",
    )
    if len(raw) > _MAX_AT_CHARS:
        raise wrong
    try:
        at = int(raw) if _DIGITS.fullmatch(raw) else iso_to_ms(raw)
    except (ValueError, OverflowError, OSError):
        raise wrong from None
    if at < record.ref_ms:
        raise ApiError(
            400, "invalid_at", "at is before the lead's latest event; only later times are known"
        )
    return at


def check_limit(raw: str | None, bound: int) -> int:
    """``?limit=`` of the history endpoint: 1 to 1000, at most the per-lead bound (a larger
    limit gets what the lead keeps; default: the bound)."""
    if raw is None:
        return bound
    if not _DIGITS.fullmatch(raw) or not 1 <= int(raw) <= MAX_LIMIT:
        raise ApiError(400, "invalid_limit", f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return min(int(raw), max(bound, 1))


def lead_body(record: LeadRecord, rules: Rules, at_ms: int) -> dict[str, Any]:
    """GET /leads/{id}: the LeadState, score decayed to ``at_ms``."""
    return snapshot(record, rules, at_ms).to_dict()


def intelligence_body(
    record: LeadRecord, rules: Rules, now_ms: int, expose_pii: bool = False
) -> dict[str, Any]:
    """GET /leads/{id}/intelligence: where the lead stands and the rules behind its score.

    Trait values (from identify events; they can be names or emails) are only
    included when ``expose_pii`` is set.
    """
    state = snapshot(record, rules, now_ms)
    keep = rules.decay_factor(now_ms - record.ref_ms)
    decayed = {rule: points * keep for rule, points in record.contributions.items()}
    body: dict[str, Any] = {
        "contact_id": record.contact_id,
        "score": out(state.current_score),
        "stage": state.stage,
        "velocity": state.velocity,
        "risk": state.risk,
        "next_action": state.next_action,
        "fit": out(state.fit),
        "grade": state.grade,
        "disqualified": state.disqualified,
        "reasons": [r.to_dict() for r in top_reasons(decayed)],
        "fit_reasons": [r.to_dict() for r in top_reasons(record.fit_contributions)],
        "rules_version": record.rules_version,
        "as_of": now_ms,
    }
    if expose_pii:
        body["traits"] = {name: value for name, (_, value) in sorted(record.traits.items())}
    return body


def history_body(record: LeadRecord, changes: list[dict[str, Any]], bound: int) -> dict[str, Any]:
    """GET /leads/{id}/history: the latest score changes, newest first."""
    return {
        "contact_id": record.contact_id,
        "event_count": record.event_count,
        "kept_per_lead": bound,
        "changes": changes,
    }
