"""apply_event: one event in, the lead's new record and what to emit out. Pure.

Score law: with no caps, a lead's score at time T is the sum over its accepted
events of points * 2^(-(T - occurred_at) / half_life). The record keeps the
score as of the latest event time seen (``ref_ms``); a late event is decayed
to that time before it is added, so the same events in any arrival order give
the same score.
"""

from __future__ import annotations

import hashlib
import heapq
import uuid
from dataclasses import dataclass, replace
from typing import Literal

from leadscore.scoring.events import EngagementEvent
from leadscore.scoring.records import (
    ActionKind,
    LeadAction,
    LeadRecord,
    LeadState,
    Reason,
    RiskLevel,
    ScoreChange,
    out,
)
from leadscore.scoring.rules import MS_PER_DAY, MS_PER_HOUR, Rules

ACTION_NAMESPACE = uuid.UUID("6f1c7a52-3a8e-4c1e-9d0b-2f43a1c0b7e1")

Status = Literal["scored", "duplicate", "too_late"]


@dataclass(frozen=True, slots=True)
class Applied:
    """The outcome of one event.

    ``scored``: ``record`` is new, ``change`` and ``actions`` are to be emitted.
    ``duplicate``: the event id was seen within the dedupe horizon; nothing changes.
    ``too_late``: the event is older than what the lead can still deduplicate;
    nothing changes and the caller dead-letters it rather than risk counting it twice.
    """

    status: Status
    record: LeadRecord
    actions: tuple[LeadAction, ...] = ()
    change: ScoreChange | None = None


def new_lead(contact_id: str, account_id: str | None, rules: Rules) -> LeadRecord:
    """The record of a lead never seen before: score 0, lowest stage, thresholds armed."""
    return LeadRecord(
        contact_id=contact_id,
        account_id=account_id,
        stage=rules.stage_for(0.0),
        rules_version=rules.version,
    )


def event_digest(event_id: str) -> str:
    """A short, fixed-size fingerprint of an event id, as kept for deduplication."""
    return hashlib.blake2b(event_id.encode("utf-8"), digest_size=8).hexdigest()


def action_id(contact_id: str, kind: str, name: str, sequence: int) -> str:
    """Deterministic id of the ``sequence``-th action of (kind, name) for a contact."""
    return str(uuid.uuid5(ACTION_NAMESPACE, f"{contact_id}\x1f{kind}\x1f{name}\x1f{sequence}"))


def apply_event(
    record: LeadRecord | None, event: EngagementEvent, rules: Rules, now_ms: int
) -> Applied:
    """Score ``event`` against the lead's ``record`` (None for a new lead).

    ``now_ms`` is processing time: it stamps outputs and never affects the score.
    """
    current = record if record is not None else new_lead(event.contact_id, event.account_id, rules)
    digest = event_digest(event.event_id)
    t = event.occurred_at
    if digest in current.seen:
        return Applied("duplicate", current)
    if current.event_count and t < current.dedupe_floor_ms:
        return Applied("too_late", current)

    ref = max(current.ref_ms, t) if current.event_count else t
    keep = rules.decay_factor(ref - current.ref_ms) if current.event_count else 1.0
    carried = current.score * keep
    weight = rules.decay_factor(ref - t)

    contributions = {rule_id: pts * keep for rule_id, pts in current.contributions.items()}
    hits: list[Reason] = []
    for rule in rules.rules_for(event.type):
        points = rule.points * weight
        hits.append(Reason(rule.id, points))
        contributions[rule.id] = contributions.get(rule.id, 0.0) + points
    delta = sum(r.points for r in hits)
    score = carried + delta
    # Stages and thresholds compare the score as emitted (4 decimals): 60 points spread
    # over a few seconds of decay are 59.99999..., shown as 60.0, and must count as 60.
    level = out(score)
    stage = rules.stage_for(level)

    updated = replace(
        current,
        account_id=event.account_id or current.account_id,
        score=score,
        ref_ms=ref,
        stage=stage,
        first_event_ms=min(current.first_event_ms, t) if current.event_count else t,
        event_count=current.event_count + 1,
        updated_ms=now_ms,
        contributions=contributions,
        fired=list(current.fired),
        action_seq=dict(current.action_seq),
        velocity=_count_velocity(current.velocity, t, ref, rules),
        rules_version=rules.version,
    )
    updated.seen, updated.dedupe_floor_ms = _remember(
        current.seen, current.dedupe_floor_ms, digest, t, ref, rules
    )

    actions: list[LeadAction] = []

    def emit(kind: ActionKind, name: str) -> None:
        seq_key = f"{kind}:{name}"
        seq = updated.action_seq.get(seq_key, 0)
        updated.action_seq[seq_key] = seq + 1
        actions.append(
            LeadAction(
                action_id=action_id(event.contact_id, kind, name, seq),
                contact_id=event.contact_id,
                account_id=updated.account_id,
                kind=kind,
                name=name,
                score=score,
                previous_score=carried,
                stage=stage,
                previous_stage=current.stage,
                occurred_at=t,
                emitted_at=now_ms,
                cause_event_id=event.event_id,
                reasons=top_reasons(contributions),
                rules_version=rules.version,
            )
        )

    if stage != current.stage:
        emit("stage_changed", stage)
    for threshold in rules.thresholds:
        if threshold.name in updated.fired:
            if level < threshold.score - threshold.hysteresis:
                updated.fired.remove(threshold.name)  # re-armed; fires on the next crossing
        elif level >= threshold.score:
            updated.fired.append(threshold.name)
            emit("threshold_crossed", threshold.name)

    change = ScoreChange(
        contact_id=event.contact_id,
        event_id=event.event_id,
        event_type=event.type,
        old_score=current.score,
        new_score=score,
        delta=delta,
        decay_applied=current.score - carried,
        reasons=tuple(hits),
        rules_version=rules.version,
        occurred_at=t,
        processed_at=now_ms,
    )
    return Applied("scored", updated, tuple(actions), change)


def top_reasons(contributions: dict[str, float], limit: int = 10) -> tuple[Reason, ...]:
    """The rules behind a score, largest share first (ties by rule id)."""
    ranked = sorted(contributions.items(), key=lambda kv: (-abs(kv[1]), kv[0]))
    return tuple(Reason(rule_id, pts) for rule_id, pts in ranked[:limit] if pts != 0.0)


def risk_at(record: LeadRecord, rules: Rules, now_ms: int) -> RiskLevel:
    """Risk by recency: how long the lead has been idle at ``now_ms``."""
    idle_days = max(0, now_ms - record.ref_ms) / MS_PER_DAY
    if idle_days > rules.risk.high_after_days:
        return "high"
    if idle_days >= rules.risk.medium_after_days:
        return "medium"
    return "low"


def velocity_of(record: LeadRecord, rules: Rules) -> int:
    """Accepted events in the trailing velocity window before the latest event (hour buckets)."""
    first = record.ref_ms // MS_PER_HOUR - rules.velocity_window_hours + 1
    return sum(n for hour, n in record.velocity.items() if hour >= first)


def snapshot(record: LeadRecord, rules: Rules, now_ms: int) -> LeadState:
    """The published LeadState of a record at processing time ``now_ms``."""
    risk = risk_at(record, rules, now_ms)
    return LeadState(
        contact_id=record.contact_id,
        account_id=record.account_id,
        score=record.score,
        fit=0.0,
        stage=record.stage,
        velocity=velocity_of(record, rules),
        risk=risk,
        next_action=rules.next_action_for(record.stage, risk),
        last_event_at=record.ref_ms,
        event_count=record.event_count,
        updated_at=now_ms,
        rules_version=record.rules_version,
    )


def _count_velocity(buckets: dict[int, int], t: int, ref: int, rules: Rules) -> dict[int, int]:
    first = ref // MS_PER_HOUR - rules.velocity_window_hours + 1
    kept = {hour: n for hour, n in buckets.items() if hour >= first}
    hour = t // MS_PER_HOUR
    if hour >= first:
        kept[hour] = kept.get(hour, 0) + 1
    return kept


def _remember(
    seen: dict[str, int], floor: int, digest: str, t: int, ref: int, rules: Rules
) -> tuple[dict[str, int], int]:
    """Add an event id; forget ids older than the horizon or beyond the per-lead bound.

    The floor rises to the oldest time still fully remembered: an event older than
    the floor cannot be checked for duplicates any more and is refused as too late.
    """
    floor = max(floor, ref - rules.dedupe_horizon_ms)
    kept = {d: ts for d, ts in seen.items() if ts >= floor}
    kept[digest] = t
    if len(kept) > rules.dedupe_max_ids:
        excess = len(kept) - rules.dedupe_max_ids
        # Usually one id over the bound: find the oldest few without sorting them all.
        oldest = heapq.nsmallest(excess, kept.items(), key=lambda kv: kv[1])
        floor = max(floor, oldest[-1][1] + 1)
        kept = {d: ts for d, ts in kept.items() if ts >= floor}
    return kept, floor
