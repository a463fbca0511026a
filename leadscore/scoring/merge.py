"""merge_leads: one lead absorbed into another, exactly. Pure.

Why it is exact: a lead's score is a sum of decayed contributions, so two leads'
scores brought to a common reference time (the later of their latest event
times) add, rule by rule. Everything else a record keeps is a set or a
latest-wins value: velocity buckets add hour by hour, remembered event ids
unite, traits keep the later value, disqualification and re-qualification the
later time. Caps are the one place where adding is not enough: two leads that
each stayed under a cap's window may not together, so the united grants are
granted again in event-time order and what no longer fits is taken off the
score (decayed as the grant was) and off the contributions of the cap's rules,
in proportion to them. Arrival order already decides which events a cap clips
in the scoring core, so with caps a merge keeps the cap's invariant (no window
over its maximum), not one particular arrival order's score.

Decisions:

- The survivor's thresholds are evaluated anew at the combined score and may
  fire; their ``cause_event_id`` is the merge id, the ``event_id`` of the merge's
  score change. Thresholds the absorbed lead fired stay with it: they were about
  another contact id.
- The survivor keeps its own action sequence, history and account, taking the
  absorbed lead's account only when it has none.
- A merge is identified by ``merge_id(survivor, absorbed, cause)`` (cause: the
  identify or merge event that asked for it), remembered in the survivor's
  dedupe memory like an event id: a replayed hand-off changes nothing, while a
  lead that a two-way merge in flight sent away and back is merged again.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

from leadscore.scoring.engine import (
    Applied,
    _assess,
    _prune_credits,
    _remember,
    _window_peak,
    event_digest,
    fit_points,
    in_velocity_window,
    new_lead,
    next_due,
    score_at,
    top_reasons,
)
from leadscore.scoring.records import LeadRecord, ScoreChange, out
from leadscore.scoring.rules import MS_PER_DAY, Rules

MERGE_NAMESPACE = uuid.UUID("0b6b1f7e-8f0e-4f55-a0c4-2e7d3c91f4a2")
#: The stage of an alias stub: no stage (stage names are never empty), not counted.
ALIAS_STAGE = ""
WEEK_MS = 7 * MS_PER_DAY

Grants = dict[str, list[tuple[int, float]]]


def merge_id(survivor: str, absorbed: str, cause: str | None = None) -> str:
    """The id of merging lead ``absorbed`` into lead ``survivor`` for the event ``cause``
    (the identify or merge event that asked for it): a replay of the same hand-off has
    the same id; another request for the same pair (after a two-way merge in flight
    sent a lead away and back) has another."""
    text = f"{survivor}\x1f{absorbed}" + (f"\x1f{cause}" if cause else "")
    return str(uuid.uuid5(MERGE_NAMESPACE, text))


def merge_leads(
    survivor: LeadRecord | None,
    absorbed: LeadRecord,
    rules: Rules,
    now_ms: int,
    survivor_id: str,
    cause: str | None = None,
) -> Applied:
    """``absorbed`` merged into ``survivor`` (None: a lead not seen yet, ``survivor_id``).

    Returns ``merged`` with the combined record, a ScoreChange (event id = the
    merge id, ``merged_from`` = the absorbed contact) and the survivor's actions,
    or ``duplicate`` when this merge was applied before.
    """
    current = survivor if survivor is not None else new_lead(survivor_id, None, rules)
    mid = merge_id(current.contact_id, absorbed.contact_id, cause)
    digest = event_digest(mid)
    if digest in current.seen:
        return Applied("duplicate", current)

    parts = [r for r in (current, absorbed) if r.event_count]
    ref = max((r.ref_ms for r in parts), default=current.ref_ms)

    def keep(record: LeadRecord) -> float:
        return rules.decay_factor(ref - record.ref_ms) if record.event_count else 0.0

    contributions: dict[str, float] = {}
    for record in parts:
        factor = keep(record)
        for rule_id, points in record.contributions.items():
            contributions[rule_id] = contributions.get(rule_id, 0.0) + points * factor
    carried = current.score * keep(current)
    added = absorbed.score * keep(absorbed)
    credits, clipped = _reclip(current.cap_credits, absorbed.cap_credits, rules)
    score = carried + added
    for cap_rules, excess in clipped:
        taken = sum(points * rules.decay_factor(ref - t) for t, points in excess)
        score -= taken
        _take(contributions, cap_rules, taken)

    traits = dict(current.traits)
    for name, (t, value) in absorbed.traits.items():
        if name not in traits or (t, value) > traits[name]:
            traits[name] = (t, value)
    fit_contributions = fit_points(traits, rules)
    dq_at, dq_by = max(
        (current.disqualified_ms, current.disqualified_by or ""),
        (absorbed.disqualified_ms, absorbed.disqualified_by or ""),
    )

    velocity = dict(current.velocity)
    for hour, n in absorbed.velocity.items():
        velocity[hour] = velocity.get(hour, 0) + n
    velocity = in_velocity_window(velocity, ref, rules)

    fired, action_seq = list(current.fired), dict(current.action_seq)
    if absorbed.contact_id == current.contact_id:  # its own state coming home: the same
        fired += [name for name in absorbed.fired if name not in fired]  # contact's actions
        for seq_key, n in absorbed.action_seq.items():
            action_seq[seq_key] = max(n, action_seq.get(seq_key, 0))
    consent_ms, consent = max(
        (current.consent_ms, current.consent or ""), (absorbed.consent_ms, absorbed.consent or "")
    )  # the latest by event time, as one lead's consent events would have left it
    known = {**absorbed.absorbed, **current.absorbed}
    known.setdefault(absorbed.contact_id, ref)
    known.pop(current.contact_id, None)  # its own state coming home (docs/identity.md)

    seen = dict(absorbed.seen)
    seen.update(current.seen)
    floor = max(current.dedupe_floor_ms, absorbed.dedupe_floor_ms)

    updated = replace(
        current,
        account_id=current.account_id or absorbed.account_id,
        score=score,
        ref_ms=ref,
        first_event_ms=min((r.first_event_ms for r in parts), default=current.first_event_ms),
        event_count=current.event_count + absorbed.event_count,
        updated_ms=now_ms,
        contributions=contributions,
        fired=fired,
        action_seq=action_seq,
        velocity=velocity,
        rules_version=rules.version,
        fit=sum(fit_contributions.values()),
        fit_contributions=fit_contributions,
        traits=traits,
        disqualified_ms=dq_at,
        disqualified_by=dq_by or None,
        requalified_ms=max(current.requalified_ms, absorbed.requalified_ms),
        assessed_ms=max(current.assessed_ms, absorbed.assessed_ms, ref),
        alias_of=None,
        absorbed=known,
        consent=consent or None,
        consent_ms=consent_ms,
    )
    updated.seen, updated.dedupe_floor_ms = _remember(seen, floor, digest, ref, ref, rules)
    updated.cap_credits = _prune_credits(credits, updated.dedupe_floor_ms, rules)
    level = out(score_at(updated, rules, updated.assessed_ms))
    actions = _assess(
        current,
        updated,
        rules,
        level=level,
        previous=out(score_at(current, rules, updated.assessed_ms)),
        occurred_at=ref,
        cause_event_id=mid,  # the merge is the cause: its score change has this event id
        now_ms=now_ms,
    )
    updated.due_ms = next_due(updated, rules)
    before = keep(current)
    gained = {k: v - current.contributions.get(k, 0.0) * before for k, v in contributions.items()}
    change = ScoreChange(
        contact_id=updated.contact_id,
        event_id=mid,
        event_type="merge",
        old_score=current.score,
        new_score=score,
        delta=score - carried,
        decay_applied=current.score - carried,
        reasons=top_reasons(gained),
        rules_version=rules.version,
        occurred_at=ref,
        processed_at=now_ms,
        old_fit=current.fit,
        new_fit=updated.fit,
        fit_reasons=top_reasons(fit_contributions),
        merged_from=absorbed.contact_id,
    )
    return Applied("merged", updated, tuple(actions), change)


def stub(record: LeadRecord | None, contact_id: str, survivor: str, rules: Rules) -> LeadRecord:
    """What stays of a lead merged into ``survivor``: its id's forwarding address."""
    return LeadRecord(
        contact_id=contact_id,
        account_id=None,
        stage=ALIAS_STAGE,
        rules_version=rules.version if record is None else record.rules_version,
        alias_of=survivor,
    )


def merges_within_week(record: LeadRecord, at_ms: int) -> int:
    """How many contacts were merged into ``record`` in the 7 days of event time up to ``at_ms``."""
    return sum(1 for t in record.absorbed.values() if at_ms - WEEK_MS < t <= at_ms)


def _reclip(
    a: Grants, b: Grants, rules: Rules
) -> tuple[Grants, list[tuple[tuple[str, ...], list[tuple[int, float]]]]]:
    """The united cap grants of two leads, granted again in event-time order so no
    window holds more than its cap; and per cap, its rules and what no longer fits
    (time, points)."""
    united: Grants = {}
    clipped: list[tuple[tuple[str, ...], list[tuple[int, float]]]] = []
    for cap in rules.caps:
        grants = sorted([*a.get(cap.id, ()), *b.get(cap.id, ())])
        if not grants:
            continue
        kept: list[tuple[int, float]] = []
        excess: list[tuple[int, float]] = []
        for t, points in grants:
            room = max(cap.max_points - _window_peak(kept, t, cap.window_ms), 0.0)
            granted = min(points, room)
            if granted > 0:
                kept.append((t, granted))
            if points - granted > 0:
                excess.append((t, points - granted))
        united[cap.id] = kept
        if excess:
            clipped.append((tuple(cap.rules), excess))
    return united, clipped


def _take(contributions: dict[str, float], rule_ids: tuple[str, ...], amount: float) -> None:
    """Take ``amount`` off the positive contributions of ``rule_ids``, in proportion."""
    shares = {r: contributions[r] for r in rule_ids if contributions.get(r, 0.0) > 0}
    total = sum(shares.values())
    if total <= 0:
        return
    for rule_id, share in shares.items():
        contributions[rule_id] -= amount * share / total
