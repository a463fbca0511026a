"""apply_event: one event in, the lead's new record and what to emit out. Pure.

Score law: with no caps, a lead's score at time T is the sum over its accepted
events of points * 2^(-(T - occurred_at) / half_life). The record keeps the
score as of the latest event time seen (``ref_ms``); a late event is decayed
to that time before it is added, so the same events in any arrival order give
the same score.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import math
import uuid
from dataclasses import dataclass, replace
from typing import Literal

from leadscore.scoring.events import EngagementEvent
from leadscore.scoring.records import (
    SCORE_DECIMALS,
    ActionKind,
    LeadAction,
    LeadRecord,
    LeadState,
    Reason,
    RiskLevel,
    ScoreChange,
    out,
)
from leadscore.scoring.rules import DISQUALIFIED, MS_PER_DAY, MS_PER_HOUR, Rules, all_hold

ACTION_NAMESPACE = uuid.UUID("6f1c7a52-3a8e-4c1e-9d0b-2f43a1c0b7e1")

Status = Literal[
    "scored", "duplicate", "too_late", "from_future", "ticked", "merged", "frozen", "reweighed"
]

#: The event type that grants or withdraws consent (``properties.status``).
CONSENT = "consent"
CONSENT_STATUSES = ("granted", "withdrawn")

# A trait keeps the first MAX_TRAIT_CHARS characters of its value: traits live in
# the lead record and go out with every action, so one huge identify property must
# not grow every later output of the lead (fit rules match the kept part).
MAX_TRAIT_CHARS = 1000

# Half of the last emitted decimal: an emitted score reads below b once s < b - ROUNDING.
ROUNDING = 0.5 * 10.0**-SCORE_DECIMALS


@dataclass(frozen=True, slots=True)
class Applied:
    """The outcome of one event.

    ``scored``: ``record`` is new, ``change`` and ``actions`` are to be emitted.
    ``duplicate``: the event id was seen within the dedupe horizon; nothing changes.
    ``too_late``: the event is older than what the lead can still deduplicate;
    nothing changes and the caller dead-letters it rather than risk counting it twice.
    ``from_future``: the event is dated further ahead of processing time than the
    allowed clock skew (a device with a wrong clock); nothing changes and the caller
    dead-letters it: scored, it would move the lead's clock into the future.
    ``ticked``: a re-assessment without an event (``apply_tick``); ``actions`` may
    hold decay-driven stage changes.
    ``merged``: another lead was absorbed into this one (``merge.merge_leads``).
    ``frozen``: the lead's consent is withdrawn; the event is not scored and nothing
    changes (a ``consent`` event is scored, and one that grants consent resumes it).
    ``reweighed``: the lead under a new rules version that changed only points
    (``reweight.reweigh``).
    """

    status: Status
    record: LeadRecord
    actions: tuple[LeadAction, ...] = ()
    change: ScoreChange | None = None
    rewound: bool = False  # the lead's clock was in the future and was set back (rewind)


def new_lead(contact_id: str, account_id: str | None, rules: Rules) -> LeadRecord:
    """The record of a lead never seen before: score 0, lowest stage, thresholds armed."""
    return LeadRecord(
        contact_id=contact_id,
        account_id=account_id,
        stage=rules.stage_for(0.0),
        rules_version=rules.version,
    )


def event_digest(event_id: str) -> bytes:
    """A short, fixed-size fingerprint of an event id (8 raw bytes), as kept for deduplication."""
    return hashlib.blake2b(event_id.encode("utf-8"), digest_size=8).digest()


def action_id(contact_id: str, kind: str, name: str, sequence: int) -> str:
    """Deterministic id of the ``sequence``-th action of (kind, name) for a contact."""
    return str(uuid.uuid5(ACTION_NAMESPACE, f"{contact_id}\x1f{kind}\x1f{name}\x1f{sequence}"))


def apply_event(
    record: LeadRecord | None,
    event: EngagementEvent,
    rules: Rules,
    now_ms: int,
    max_ahead_ms: int | None = None,
) -> Applied:
    """Score ``event`` against the lead's ``record`` (None for a new lead).

    ``now_ms`` is processing time: it stamps outputs and never affects the score.
    With ``max_ahead_ms``, an event dated more than that after ``now_ms`` is refused
    (``from_future``), and a lead whose clock an earlier future-dated event moved
    more than that ahead is first set back to ``now_ms`` (see ``rewind``).
    """
    rewound = False
    if max_ahead_ms is not None:
        if event.occurred_at > now_ms + max_ahead_ms:
            current = record if record is not None else new_lead(event.contact_id, None, rules)
            return Applied("from_future", current)
        if record is not None and record.event_count and record.ref_ms > now_ms + max_ahead_ms:
            record, rewound = rewind(record, rules, now_ms), True
    applied = _apply(record, event, rules, now_ms)
    return replace(applied, rewound=True) if rewound else applied


def rewind(record: LeadRecord, rules: Rules, now_ms: int) -> LeadRecord:
    """A lead whose clock a future-dated event moved past ``now_ms``, set back to ``now_ms``.

    Such a lead refuses every real event as too late and its score never decays.
    Its score is kept as it stood at its (future) latest event time: the future
    event counts its points once, undecayed, and the events before it keep the
    decay they were given (the error is on the low side, never a doubled point).
    Event times after ``now_ms`` (traits, disqualification, cap grants, velocity,
    remembered ids) are brought back to ``now_ms``. Events are deduplicated from
    the processing time of the lead's last update on: ids remembered from before
    the freeze were already forgotten, so an older event is refused as too late
    rather than risk counting it twice.
    """

    def back(t: int) -> int:
        return min(t, now_ms)

    disqualified_ms, requalified_ms = back(record.disqualified_ms), back(record.requalified_ms)
    if record.disqualified_ms < record.requalified_ms and disqualified_ms >= requalified_ms:
        disqualified_ms = requalified_ms - 1  # a re-qualification stays the later of the two

    updated = replace(
        record,
        ref_ms=now_ms,
        first_event_ms=back(record.first_event_ms),
        assessed_ms=now_ms,
        fired=list(record.fired),
        action_seq=dict(record.action_seq),
        velocity={h: n for h, n in record.velocity.items() if h <= now_ms // MS_PER_HOUR},
        seen={d: back(t) for d, t in record.seen.items()},
        dedupe_floor_ms=min(record.dedupe_floor_ms, back(record.updated_ms)),
        traits={name: (back(t), value) for name, (t, value) in record.traits.items()},
        cap_credits={
            cap: [(back(t), p) for t, p in grants] for cap, grants in record.cap_credits.items()
        },
        disqualified_ms=disqualified_ms,
        requalified_ms=requalified_ms,
    )
    updated.due_ms = next_due(updated, rules)
    return updated


def _apply(record: LeadRecord | None, event: EngagementEvent, rules: Rules, now_ms: int) -> Applied:
    current = record if record is not None else new_lead(event.contact_id, event.account_id, rules)
    digest = event_digest(event.event_id)
    t = event.occurred_at
    if digest in current.seen:
        return Applied("duplicate", current)
    if current.event_count and t < current.dedupe_floor_ms:
        return Applied("too_late", current)
    consent, consent_ms = current.consent, current.consent_ms
    if event.type == CONSENT:
        status = event.properties.get("status")
        if status in CONSENT_STATUSES and (t, status) > (consent_ms, consent or ""):
            consent, consent_ms = status, t  # the latest by event time (withdrawn on a tie)
    elif current.frozen:
        return Applied("frozen", current)

    ref = max(current.ref_ms, t) if current.event_count else t
    keep = rules.decay_factor(ref - current.ref_ms) if current.event_count else 1.0
    carried = current.score * keep
    weight = rules.decay_factor(ref - t)

    contributions = {rule_id: pts * keep for rule_id, pts in current.contributions.items()}
    credits = {cap: list(grants) for cap, grants in current.cap_credits.items()}
    hits: list[Reason] = []
    for rule in rules.matching(event.type, event.properties):
        granted, clipped, cap_id = _grant(rule.id, rule.points, t, credits, rules)
        points = granted * weight
        hits.append(Reason(rule.id, points, clipped * weight, cap_id))
        if points:
            contributions[rule.id] = contributions.get(rule.id, 0.0) + points
    delta = sum(r.points for r in hits)
    score = carried + delta
    traits, fit, fit_contributions = _fit(current, event, rules)
    disqualified_ms, disqualified_by, requalified_ms = _qualification(current, event, rules)

    updated = replace(
        current,
        account_id=event.account_id or current.account_id,
        score=score,
        ref_ms=ref,
        first_event_ms=min(current.first_event_ms, t) if current.event_count else t,
        event_count=current.event_count + 1,
        updated_ms=now_ms,
        contributions=contributions,
        fired=list(current.fired),
        action_seq=dict(current.action_seq),
        velocity=_count_velocity(current.velocity, t, ref, rules),
        rules_version=rules.version,
        fit=fit,
        fit_contributions=fit_contributions,
        traits=traits,
        disqualified_ms=disqualified_ms,
        disqualified_by=disqualified_by,
        requalified_ms=requalified_ms,
        assessed_ms=max(ref, current.assessed_ms),
        consent=consent,
        consent_ms=consent_ms,
    )
    updated.seen, updated.dedupe_floor_ms = _remember(
        current.seen, current.dedupe_floor_ms, digest, t, ref, rules
    )
    updated.cap_credits = _prune_credits(credits, updated.dedupe_floor_ms, rules)
    # Stages and thresholds compare the score as emitted (4 decimals): 60 points spread
    # over a few seconds of decay are 59.99999..., shown as 60.0, and must count as 60.
    level = out(score_at(updated, rules, updated.assessed_ms))
    actions = _assess(
        current,
        updated,
        rules,
        level=level,
        previous=out(carried),
        occurred_at=t,
        cause_event_id=event.event_id,
        now_ms=now_ms,
    )
    if updated.frozen and not current.frozen:
        actions.append(
            _action(current, updated, rules, "consent_withdrawn", CONSENT, level, out(carried),
                    t, event.event_id, now_ms)
        )  # fmt: skip
    updated.due_ms = next_due(updated, rules)

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
        old_fit=current.fit,
        new_fit=fit,
        fit_reasons=top_reasons(fit_contributions),
    )
    return Applied("scored", updated, tuple(actions), change)


def apply_tick(record: LeadRecord, rules: Rules, now_ms: int) -> Applied:
    """Re-assess a lead at processing time ``now_ms`` with no new event: decay-driven changes.

    The score decays from its last event time to ``now_ms``; if that takes it
    below its stage's band or below a fired threshold's re-arm level, the stage
    changes (a ``stage_changed`` action with no cause event) or the threshold
    re-arms. The stored score stays as of the last event, so later events
    still score exactly.
    """
    at = max(now_ms, record.assessed_ms)
    updated = replace(
        record,
        fired=list(record.fired),
        action_seq=dict(record.action_seq),
        assessed_ms=at,
        updated_ms=now_ms,
        rules_version=rules.version,
    )
    actions = _assess(
        record,
        updated,
        rules,
        level=out(score_at(record, rules, at)),
        previous=out(score_at(record, rules, record.assessed_ms)),
        occurred_at=at,
        cause_event_id=None,
        now_ms=now_ms,
    )
    due = next_due(updated, rules)
    # A crossing computed a hair early (float rounding) is looked at again shortly.
    updated.due_ms = None if due is None else max(due, now_ms + 1)
    return Applied("ticked", updated, tuple(actions))


def score_at(record: LeadRecord, rules: Rules, at_ms: int) -> float:
    """The lead's engagement score decayed from its last event time to ``at_ms``."""
    return record.score * rules.decay_factor(at_ms - record.ref_ms)


def next_due(record: LeadRecord, rules: Rules) -> int | None:
    """When decay alone next changes the lead's stage or re-arms a threshold (None: never).

    The score follows s * 2^(-(T - ref) / half_life), so the time it reaches a
    level b is ref + half_life * log2(s / b): a lead cools down toward 0 and
    crosses, in turn, the bottom of its stage's band and the re-arm levels of
    its fired thresholds. Only those crossings are scheduled.
    """
    s = record.score
    if s == 0.0 or not record.event_count or record.frozen:
        return None
    targets: list[float] = []
    if not record.disqualified:
        names = [stage.name for stage in rules.stages]
        if record.stage in names:
            i = names.index(record.stage)
            if s > 0 and i > 0:
                targets.append(rules.stages[i].min_score)
            elif s < 0 and i + 1 < len(rules.stages):
                targets.append(rules.stages[i + 1].min_score)
    for threshold in rules.thresholds:
        if threshold.name in record.fired:
            targets.append(threshold.score - threshold.hysteresis)
    due: int | None = None
    for boundary in targets:
        at = crossing_at(record, rules, boundary)
        if at is not None:
            due = at if due is None else min(due, at)
    return due


def crossing_at(record: LeadRecord, rules: Rules, boundary: float) -> int | None:
    """When decay alone takes the lead's published score across ``boundary`` (None:
    never: decay approaches 0 and does not cross to the other side)."""
    s = record.score
    # The emitted score has SCORE_DECIMALS: it reads below b once s < b - ROUNDING.
    target = boundary - ROUNDING
    if s == 0.0 or target == 0.0 or (target > 0) != (s > 0):
        return None
    if abs(target) >= abs(s):
        return record.ref_ms  # already past it: at once
    return record.ref_ms + math.ceil(rules.half_life_ms * math.log2(s / target))


def stage_drop_at(record: LeadRecord, rules: Rules) -> int | None:
    """When decay alone takes a positive lead below the bottom of its stage (None: it
    is in the lowest stage, disqualified, frozen or not positive)."""
    if record.score <= 0.0 or record.disqualified or record.frozen or not record.event_count:
        return None
    names = [stage.name for stage in rules.stages]
    if record.stage not in names or names.index(record.stage) == 0:
        return None
    return crossing_at(record, rules, rules.stages[names.index(record.stage)].min_score)


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
        current_score=score_at(record, rules, now_ms),
        fit=record.fit,
        grade=rules.grade_for(record.fit),
        disqualified=record.disqualified,
        stage=record.stage,
        velocity=velocity_of(record, rules),
        risk=risk,
        next_action=rules.next_action_for(record.stage, risk),
        last_event_at=record.ref_ms,
        event_count=record.event_count,
        updated_at=now_ms,
        rules_version=record.rules_version,
        consent=record.consent,
    )


def in_velocity_window(buckets: dict[int, int], ref: int, rules: Rules) -> dict[int, int]:
    """The hour buckets inside the velocity window that ends at ``ref``."""
    first = ref // MS_PER_HOUR - rules.velocity_window_hours + 1
    return {hour: n for hour, n in buckets.items() if hour >= first}


def fit_points(traits: dict[str, tuple[int, str]], rules: Rules) -> dict[str, float]:
    """The fit rules that hold for these traits, and their points."""
    profile = {name: value for name, (_, value) in traits.items()}
    return {r.id: r.points for r in rules.fit.rules if all_hold(r.when, profile)}


def _count_velocity(buckets: dict[int, int], t: int, ref: int, rules: Rules) -> dict[int, int]:
    first = ref // MS_PER_HOUR - rules.velocity_window_hours + 1
    kept = in_velocity_window(buckets, ref, rules)
    hour = t // MS_PER_HOUR
    if hour >= first:
        kept[hour] = kept.get(hour, 0) + 1
    return kept


def _remember(
    seen: dict[bytes, int], floor: int, digest: bytes, t: int, ref: int, rules: Rules
) -> tuple[dict[bytes, int], int]:
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


def _assess(
    before: LeadRecord,
    updated: LeadRecord,
    rules: Rules,
    *,
    level: float,
    previous: float,
    occurred_at: int,
    cause_event_id: str | None,
    now_ms: int,
) -> list[LeadAction]:
    """Set ``updated``'s stage and fired thresholds for a score of ``level``; the actions due.

    A frozen lead (consent withdrawn) keeps its stage and thresholds: no action is due.
    """
    if updated.frozen:
        return []
    grade = rules.grade_for(updated.fit)
    disqualified = updated.disqualified
    stage = DISQUALIFIED if disqualified else rules.stage_for(level)
    updated.stage = stage
    known = {t.name for t in rules.thresholds}
    updated.fired = [name for name in updated.fired if name in known]
    actions: list[LeadAction] = []

    def add_action(kind: ActionKind, name: str) -> None:
        actions.append(
            _action(before, updated, rules, kind, name, level, previous, occurred_at,
                    cause_event_id, now_ms)
        )  # fmt: skip

    if disqualified and not before.disqualified:
        add_action("disqualified", updated.disqualified_by or DISQUALIFIED)
    elif stage != before.stage:
        add_action("stage_changed", stage)
    for threshold in rules.thresholds:
        if threshold.name in updated.fired:
            if level < threshold.score - threshold.hysteresis:
                updated.fired.remove(threshold.name)  # re-armed; fires on the next crossing
        elif (
            level >= threshold.score
            and not disqualified
            and rules.grade_at_least(grade, threshold.min_grade)
        ):
            updated.fired.append(threshold.name)
            add_action("threshold_crossed", threshold.name)
    return actions


def next_seq(action_seq: dict[str, int], kind: str, name: str) -> int:
    """The sequence number of the next action of (kind, name), counted in ``action_seq``
    (an action id names it, so a replay gives the same id)."""
    seq_key = f"{kind}:{name}"
    seq = action_seq.get(seq_key, 0)
    action_seq[seq_key] = seq + 1
    return seq


def _action(
    before: LeadRecord,
    updated: LeadRecord,
    rules: Rules,
    kind: ActionKind,
    name: str,
    level: float,
    previous: float,
    occurred_at: int,
    cause_event_id: str | None,
    now_ms: int,
) -> LeadAction:
    """The next action of (kind, name) for ``updated``, counted in its action sequence."""
    seq = next_seq(updated.action_seq, kind, name)
    return LeadAction(
        action_id=action_id(updated.contact_id, kind, name, seq),
        contact_id=updated.contact_id,
        account_id=updated.account_id,
        kind=kind,
        name=name,
        score=level,
        previous_score=previous,
        stage=updated.stage,
        previous_stage=before.stage,
        occurred_at=occurred_at,
        emitted_at=now_ms,
        cause_event_id=cause_event_id,
        reasons=top_reasons(updated.contributions),
        rules_version=rules.version,
        fit=updated.fit,
        grade=rules.grade_for(updated.fit),
        fit_reasons=top_reasons(updated.fit_contributions),
        traits=tuple(sorted((k, v) for k, (_, v) in updated.traits.items())),
    )


def _grant(
    rule_id: str, points: float, t: int, credits: dict[str, list[tuple[int, float]]], rules: Rules
) -> tuple[float, float, str | None]:
    """(granted, clipped, cap id) for a rule's points at event time ``t``, booking the grant."""
    cap = rules.cap_of(rule_id)
    if cap is None or points <= 0:
        return points, 0.0, None
    grants = credits.setdefault(cap.id, [])
    room = cap.max_points - _window_peak(grants, t, cap.window_ms)
    granted = min(points, max(room, 0.0))
    if granted > 0:
        bisect.insort(grants, (t, granted))
    clipped = points - granted
    return granted, clipped, cap.id if clipped > 0 else None


def _window_peak(grants: list[tuple[int, float]], t: int, window: int) -> float:
    """The most already granted in any window [a, a + window) that contains ``t``.

    Granting p at t keeps every window under the cap iff this peak plus p is.
    The sum over [a, a + window) only rises when a later grant enters, so the
    windows worth checking start at t - window + 1 or where a later grant enters.
    """
    lo = t - window + 1
    nearby = [(ts, p) for ts, p in grants if lo <= ts < t + window]
    if not nearby:
        return 0.0
    starts = sorted({lo} | {ts - window + 1 for ts, _ in nearby if ts > t})
    peak = 0.0
    for a in starts:
        total = sum(p for ts, p in nearby if a <= ts < a + window)
        peak = max(peak, total)
    return peak


def _prune_credits(
    credits: dict[str, list[tuple[int, float]]], floor: int, rules: Rules
) -> dict[str, list[tuple[int, float]]]:
    """Forget grants no window of an acceptable event (at or after ``floor``) can reach."""
    kept: dict[str, list[tuple[int, float]]] = {}
    for cap in rules.caps:
        grants = [g for g in credits.get(cap.id, ()) if g[0] > floor - cap.window_ms]
        if grants:
            kept[cap.id] = grants
    return kept


def _fit(
    current: LeadRecord, event: EngagementEvent, rules: Rules
) -> tuple[dict[str, tuple[int, str]], float, dict[str, float]]:
    """Traits, fit score and fit contributions after ``event`` (latest event time wins)."""
    fit = rules.fit
    traits = current.traits
    if event.type in fit.event_types:
        wanted = fit.traits
        for name, full in event.properties.items():
            if name not in wanted:
                continue
            value = full[:MAX_TRAIT_CHARS]
            seen = traits.get(name)
            # Later event time wins; on a tie the larger value, so any arrival order agrees.
            if seen is None or (event.occurred_at, value) > seen:
                if traits is current.traits:
                    traits = dict(traits)
                traits[name] = (event.occurred_at, value)
    if traits is current.traits and current.rules_version == rules.version:
        return traits, current.fit, current.fit_contributions
    contributions = fit_points(traits, rules)
    return traits, sum(contributions.values()), contributions


def _qualification(
    current: LeadRecord, event: EngagementEvent, rules: Rules
) -> tuple[int, str | None, int]:
    """(disqualified at, by rule, re-qualified at) after ``event``, by event time.

    A lead is disqualified while its latest disqualifying event is not older than
    its latest re-qualifying one, so the outcome does not depend on arrival order.
    """
    t = event.occurred_at
    at, by, requalified = current.disqualified_ms, current.disqualified_by, current.requalified_ms
    for rule in rules.disqualify:
        if rule.matches(event.type, event.properties) and (t, rule.id) > (at, by or ""):
            at, by = t, rule.id
    if any(rule.matches(event.type, event.properties) for rule in rules.requalify):
        requalified = max(requalified, t)
    return at, by, requalified


def erased_action(record: LeadRecord, rules: Rules, now_ms: int, request_id: str) -> LeadAction:
    """The ``erased`` action of a lead being erased: sinks purge what they hold of the
    contact, CRMs delete it. It carries no reasons and no traits."""
    seq_key = "erased:erase"
    seq = record.action_seq.get(seq_key, 0)
    return LeadAction(
        action_id=action_id(record.contact_id, "erased", "erase", seq),
        contact_id=record.contact_id,
        account_id=record.account_id,
        kind="erased",
        name="erase",
        score=0.0,
        previous_score=out(score_at(record, rules, now_ms)),
        stage="",
        previous_stage=record.stage,
        occurred_at=now_ms,
        emitted_at=now_ms,
        cause_event_id=request_id,
        reasons=(),
        rules_version=rules.version,
    )
