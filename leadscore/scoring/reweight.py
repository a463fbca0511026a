"""Rule changes that only change points (issue 24): what kind of change a new rules
version is, and a lead re-weighted under it exactly, without replaying its events.

A lead keeps, per scoring rule, what that rule has contributed to its score, decayed
to the lead's latest event time (``LeadRecord.contributions``). For a rule no cap
limits, that is ``points x sum of 2^(-(ref - t) / half_life)`` over the events it
matched, so under new points it is the same sum times ``new / old``: the score under
the new version is exact. The fit score is recomputed from the lead's traits.

That holds only when nothing else changed (conditions, caps, decay, stages and every
other setting; version aside), when a changed rule had points before (a rule worth
0 left nothing to scale) and when no cap limits it (what a cap clipped depends on the
points). ``classify`` says which: ``points_only`` (re-weight at the switch),
``forward`` (new events only, with the reasons) or ``none``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from leadscore.scoring.engine import Applied, _assess, fit_points, next_due, score_at
from leadscore.scoring.records import LeadRecord, out
from leadscore.scoring.rules import Rules

ChangeKind = Literal["none", "points_only", "forward"]


@dataclass(frozen=True)
class RulesChange:
    """How ``new`` differs from ``old``."""

    kind: ChangeKind
    #: scoring rule id -> (old points, new points), for the rules whose points changed
    points: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: fit rule id -> (old points, new points)
    fit_points: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: why the change applies to new events only (empty unless ``forward``)
    why: list[str] = field(default_factory=list)


def _without_points(rules: Rules) -> dict[str, Any]:
    shape = rules.model_dump(exclude={"version"})
    for rule in shape["rules"]:
        rule["points"] = 0
    for rule in shape["fit"]["rules"]:
        rule["points"] = 0
    return shape


def classify(old: Rules, new: Rules) -> RulesChange:
    """What kind of change ``new`` is, from ``old``."""
    before, after = _without_points(old), _without_points(new)
    if before != after:
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        return RulesChange("forward", why=[f"{', '.join(changed)} changed, not only points"])
    points = {
        a.id: (a.points, b.points) for a, b in zip(old.rules, new.rules, strict=True)
        if a.points != b.points
    }  # fmt: skip
    fit = {
        a.id: (a.points, b.points)
        for a, b in zip(old.fit.rules, new.fit.rules, strict=True)
        if a.points != b.points
    }
    why = []
    for rule_id, (was, _) in sorted(points.items()):
        if was == 0:
            why.append(f"rule {rule_id} gave 0 points: how many events it matched is not kept")
        cap = old.cap_of(rule_id)
        if cap is not None:
            why.append(
                f"rule {rule_id} is limited by cap {cap.id}: what the cap held back depends "
                "on its points"
            )
    if why:
        return RulesChange("forward", points, fit, why)
    if not points and not fit:
        return RulesChange("none")
    return RulesChange("points_only", points, fit)


def reweigh(
    record: LeadRecord, change: RulesChange, new: Rules, now_ms: int, *, fire: bool = False
) -> Applied:
    """``record`` under ``new`` (a ``points_only`` or ``none`` change from the rules it
    was scored with), its stage and thresholds assessed at its last assessment time. With ``fire``
    the actions a crossing causes are returned (and counted in the lead's action
    sequence); otherwise the stage and thresholds move silently (the rules file's
    ``on_publish: silent``)."""
    if change.kind == "forward":
        raise ValueError("a forward change cannot re-weight leads")
    if not record.event_count or record.alias_of is not None:
        return Applied("reweighed", replace(record, rules_version=new.version))
    scale = {rule_id: now / was for rule_id, (was, now) in change.points.items()}
    contributions = {
        rule_id: points * scale.get(rule_id, 1.0)
        for rule_id, points in record.contributions.items()
    }
    score = record.score + sum(
        points * (scale[rule_id] - 1.0)
        for rule_id, points in record.contributions.items()
        if rule_id in scale
    )
    fits = fit_points(record.traits, new)
    updated = replace(
        record,
        score=score,
        contributions=contributions,
        fit=sum(fits.values()),
        fit_contributions=fits,
        fired=list(record.fired),
        action_seq=dict(record.action_seq),
        rules_version=new.version,
        updated_ms=now_ms,
    )
    at = record.assessed_ms
    actions = _assess(
        record,
        updated,
        new,
        level=out(score_at(updated, new, at)),
        previous=out(score_at(record, new, at)),
        occurred_at=at,
        cause_event_id=None,
        now_ms=now_ms,
    )
    if not fire:
        actions, updated.action_seq = [], dict(record.action_seq)
    updated.due_ms = next_due(updated, new)
    return Applied("reweighed", updated, tuple(actions))
