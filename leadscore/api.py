"""The lead query API's contract, free of any web framework: ids, errors, auth, bodies.

Every error body has one shape: ``{"error": {"code": ..., "message": ...}}``.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from leadscore.errors import ApiError
from leadscore.scoring import LeadRecord, Rules, snapshot
from leadscore.scoring.accounts import AccountRecord, top_contacts
from leadscore.scoring.engine import top_reasons
from leadscore.scoring.events import id_problem, iso_to_ms
from leadscore.scoring.ranking import Listed
from leadscore.scoring.records import out
from leadscore.step.accounts import account_state


def check_contact_id(contact_id: str) -> str:
    """The contact id from a path, or ApiError 400 when it cannot be one."""
    problem = id_problem(contact_id)
    if problem:
        raise ApiError(400, "invalid_contact_id", f"contact id {problem}")
    return contact_id


MAX_LIMIT = 1000  # the largest history a lead can keep (LEADSCORE_HISTORY_SIZE)
_DIGITS = re.compile(r"[0-9]{1,15}")  # ASCII only: str.isdigit() also takes "²" and "٣"
_MAX_AT_CHARS = 64
_ISO_YEAR = re.compile(r"[1-8][0-9]{3}-")  # years 1000 to 8999, as the document says


def check_account_id(account_id: str) -> str:
    """The account id from a path, or ApiError 400 when it cannot be one."""
    problem = id_problem(account_id)
    if problem:
        raise ApiError(400, "invalid_account_id", f"account id {problem}")
    return account_id


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


def check_at(raw: str | None, record: LeadRecord | AccountRecord, now_ms: int) -> int:
    """The time to decay a lead's (an account's) score to: ``?at=`` (ISO-8601 with offset,
    or epoch ms) or now.

    Decay is a pure function of time, so a later time answers "where will this lead
    stand then, with no new events". A time before the lead's latest event cannot be
    answered from its current record (the events after it are already counted).
    """
    if raw is None:
        return now_ms
    wrong = ApiError(
        400,
        "invalid_at",
        "at must be epoch milliseconds or ISO-8601 with a UTC offset (years 1000 to "
        "8999), e.g. 2026-11-23T09:00:00+01:00",
    )
    epoch = _DIGITS.fullmatch(raw)
    if len(raw) > _MAX_AT_CHARS or not (epoch or _ISO_YEAR.match(raw)):
        raise wrong
    try:
        at = int(raw) if epoch else iso_to_ms(raw)
    except (ValueError, OverflowError, OSError):
        raise wrong from None
    if at < record.ref_ms:  # a well-formed time the record cannot answer for: 409
        what = "lead" if isinstance(record, LeadRecord) else "account"
        raise ApiError(
            409,
            "at_before_latest_event",
            f"at is before the {what}'s latest event; only later times are known",
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


DEFAULT_LIST_LIMIT = 20
_NUMBER = re.compile(r"-?[0-9]{1,9}(\.[0-9]{1,6})?")
_DURATION = re.compile(r"([0-9]{1,6})([smhd])")
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


@dataclass(frozen=True, slots=True)
class ListQuery:
    """``GET /leads``: the top ``limit`` leads by current score, filtered."""

    limit: int
    stage: str | None
    min_score: float | None
    account_id: str | None


def check_list_query(query: Mapping[str, str], rules: Rules) -> ListQuery:
    """The ranked list's parameters, or ApiError 400 saying which one is wrong."""
    sort = query.get("sort", "score")
    if sort != "score":
        raise ApiError(400, "invalid_sort", "sort must be score (the only order served)")
    raw_limit = query.get("limit")
    limit = DEFAULT_LIST_LIMIT if raw_limit is None else check_limit(raw_limit, MAX_LIMIT)
    stage = query.get("stage")
    names = [s.name for s in rules.stages]
    if stage is not None and stage not in names:
        raise ApiError(400, "invalid_stage", f"stage must be one of {', '.join(names)}")
    raw_min = query.get("min_score")
    if raw_min is not None and not _NUMBER.fullmatch(raw_min):
        raise ApiError(400, "invalid_min_score", "min_score must be a number, e.g. 40 or 12.5")
    account = query.get("account_id")
    problem = None if account is None else id_problem(account)
    if problem:
        raise ApiError(400, "invalid_account_id", f"account id {problem}")
    return ListQuery(limit, stage, None if raw_min is None else float(raw_min), account)


DEFAULT_COOLING_LIMIT = 100


@dataclass(frozen=True, slots=True)
class CoolingQuery:
    """``GET /leads/cooling``: the leads whose stage runs out within ``within_ms``."""

    within_ms: int
    limit: int


def check_cooling_query(query: Mapping[str, str]) -> CoolingQuery:
    """The cooling list's parameters, or ApiError 400 saying which one is wrong."""
    raw_limit = query.get("limit")
    limit = DEFAULT_COOLING_LIMIT if raw_limit is None else check_limit(raw_limit, MAX_LIMIT)
    return CoolingQuery(check_within(query.get("within")), limit)


def check_within(raw: str | None) -> int:
    """``?within=`` of the cooling list: a duration such as 90m, 24h or 7d (default 24h;
    up to six digits), in milliseconds."""
    if raw is None:
        return _UNIT_MS["h"] * 24
    found = _DURATION.fullmatch(raw)
    if found is None:
        raise ApiError(400, "invalid_within", "within must be a duration such as 90m, 24h or 7d")
    return int(found.group(1)) * _UNIT_MS[found.group(2)]


def listed_body(listed: Listed) -> dict[str, Any]:
    return {
        "contact_id": listed.contact_id,
        "score": out(listed.score),
        "stage": listed.stage,
        "account_id": listed.account_id,
        "next_stage": listed.next_stage,
        "points_to_next": None if listed.points_to_next is None else out(listed.points_to_next),
    }


def list_body(listed: list[Listed], at_ms: int, partitions: list[int]) -> dict[str, Any]:
    """GET /leads: the ranked leads of ``partitions`` at ``at_ms``."""
    return {"leads": [listed_body(x) for x in listed], "as_of": at_ms, "partitions": partitions}


def cooling_body(
    cooling: list[tuple[int, Listed]],
    at_ms: int,
    within_ms: int,
    partitions: list[int],
    rules: Rules,
) -> dict[str, Any]:
    """GET /leads/cooling: leads whose stage runs out within the window, soonest first,
    with when and the stage they drop to."""
    names = [s.name for s in rules.stages]
    below = {name: names[i - 1] for i, name in enumerate(names) if i > 0}
    return {
        "leads": [
            {**listed_body(listed), "drops_at": at, "drops_to": below.get(listed.stage)}
            for at, listed in cooling
        ],
        "as_of": at_ms,
        "within_ms": within_ms,
        "partitions": partitions,
    }


def account_body(record: AccountRecord, rules: Rules, now_ms: int) -> dict[str, Any]:
    """GET /accounts/{id}: the AccountState, engagement decayed to ``now_ms``."""
    return account_state(record, rules, now_ms)


def account_contacts_body(
    record: AccountRecord, rules: Rules, now_ms: int, limit: int
) -> dict[str, Any]:
    """GET /accounts/{id}/contacts: the tracked contacts, highest current score first."""
    at = max(now_ms, record.ref_ms)
    floor = rules.accounts.engaged_floor
    ranked = top_contacts(record, rules, at, limit=limit)
    return {
        "account_id": record.account_id,
        "contacts": [
            {
                "contact_id": contact,
                "score": score,
                "engaged": score >= floor,
                "persona": record.tracked[contact].persona,
            }
            for contact, score in ranked
        ],
        "tracked": len(record.tracked),
        "total": record.contacts,
        "as_of": at,
    }


def served_document(document: bytes, rules: Rules) -> bytes:
    """The OpenAPI document as a worker serves it: with its rules' stage names as the
    values ``GET /leads?stage=`` takes."""
    parsed = json.loads(document)
    for parameter in parsed["paths"]["/leads"]["get"]["parameters"]:
        if parameter["name"] == "stage":
            parameter["schema"]["enum"] = [stage.name for stage in rules.stages]
    return json.dumps(parsed, indent=2).encode()
