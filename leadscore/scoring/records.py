"""What scoring produces: the lead record kept in the table and the records emitted.

LeadRecord is the internal per-lead state (the table value). LeadAction,
ScoreChange and LeadState are the output contracts in schemas/*.avsc.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ActionKind = Literal[
    "threshold_crossed", "stage_changed", "disqualified", "erased", "consent_withdrawn"
]
RiskLevel = Literal["low", "medium", "high"]

# Emitted scores carry 4 decimals: enough for audits, and free of float noise
# such as 20.99999998 for 21 points spread over a few seconds of decay.
SCORE_DECIMALS = 4


def out(score: float) -> float:
    """A score as it is emitted."""
    return round(score, SCORE_DECIMALS) + 0.0  # + 0.0 turns -0.0 into 0.0


@dataclass(frozen=True, slots=True)
class Reason:
    """One rule's share of a score or of a change.

    ``points`` is what the rule added (decayed to the time of the score it
    explains); ``clipped`` is what a cap (``cap_id``) held back, on the same scale.
    """

    rule_id: str
    points: float
    clipped: float = 0.0
    cap_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "points": out(self.points),
            "clipped": out(self.clipped),
            "cap_id": self.cap_id,
        }


@dataclass(slots=True)
class LeadRecord:
    """Everything scoring keeps about one lead. Scores are as of ``ref_ms`` (event time)."""

    contact_id: str
    account_id: str | None
    stage: str
    rules_version: str
    score: float = 0.0
    ref_ms: int = 0  # latest event time accepted
    first_event_ms: int = 0
    event_count: int = 0
    updated_ms: int = 0
    contributions: dict[str, float] = field(default_factory=dict)  # rule id -> points at ref_ms
    fired: list[str] = field(default_factory=list)  # thresholds fired and not yet re-armed
    action_seq: dict[str, int] = field(default_factory=dict)  # "kind:name" -> actions so far
    velocity: dict[int, int] = field(default_factory=dict)  # event-time hour -> accepted events
    seen: dict[bytes, int] = field(default_factory=dict)  # event id digest (8 bytes) -> event time
    dedupe_floor_ms: int = 0  # events older than this can no longer be deduplicated
    fit: float = 0.0
    fit_contributions: dict[str, float] = field(default_factory=dict)  # fit rule id -> points
    traits: dict[str, tuple[int, str]] = field(default_factory=dict)  # trait -> (event time, value)
    cap_credits: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # cap -> grants
    disqualified_ms: int = -1  # event time of the latest disqualifying event
    disqualified_by: str | None = None  # the rule that matched it
    requalified_ms: int = -1  # event time of the latest re-qualifying event
    assessed_ms: int = 0  # time the stage and thresholds were last evaluated at
    due_ms: int | None = None  # when decay next changes the stage or re-arms a threshold
    # Where the lead's latest score changes are on the score-changes topic (the worker's
    # history of the lead; the scoring core neither reads nor writes them).
    change_partition: int = -1
    change_offsets: list[int] = field(default_factory=list)  # oldest first
    # Identity (leadscore.scoring.merge): a lead merged into another is kept as a stub
    # that names its survivor; a survivor knows every contact merged into it, directly
    # or through a chain, with the event time of the merge.
    alias_of: str | None = None
    absorbed: dict[str, int] = field(default_factory=dict)
    # Consent (a consent event's properties.status): the latest by event time wins;
    # while "withdrawn" the lead is frozen (nothing scored, no actions).
    consent: str | None = None  # None: never said; "granted" or "withdrawn"
    consent_ms: int = -1  # event time of the consent event that set it

    @property
    def disqualified(self) -> bool:
        return self.disqualified_ms >= 0 and self.disqualified_ms >= self.requalified_ms

    @property
    def frozen(self) -> bool:
        """Consent withdrawn: nothing is scored and no action goes out until it is granted."""
        return self.consent == "withdrawn"

    @property
    def is_alias(self) -> bool:
        """A stub left by a merge: no lead of its own, events go to ``alias_of``."""
        return self.alias_of is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "contact_id": self.contact_id,
            "account_id": self.account_id,
            "stage": self.stage,
            "rules_version": self.rules_version,
            "score": self.score,
            "ref_ms": self.ref_ms,
            "first_event_ms": self.first_event_ms,
            "event_count": self.event_count,
            "updated_ms": self.updated_ms,
            "contributions": self.contributions,
            "fired": self.fired,
            "action_seq": self.action_seq,
            "velocity": {str(k): v for k, v in self.velocity.items()},
            "seen": {digest.hex(): t for digest, t in self.seen.items()},
            "dedupe_floor_ms": self.dedupe_floor_ms,
            "fit": self.fit,
            "fit_contributions": self.fit_contributions,
            "traits": {k: list(v) for k, v in self.traits.items()},
            "cap_credits": {k: [list(g) for g in v] for k, v in self.cap_credits.items()},
            "disqualified_ms": self.disqualified_ms,
            "disqualified_by": self.disqualified_by,
            "requalified_ms": self.requalified_ms,
            "assessed_ms": self.assessed_ms,
            "due_ms": self.due_ms,
            "change_partition": self.change_partition,
            "change_offsets": self.change_offsets,
            "alias_of": self.alias_of,
            "absorbed": self.absorbed,
            "consent": self.consent,
            "consent_ms": self.consent_ms,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LeadRecord:
        """Read a stored record; fields added after the first release have defaults."""
        return cls(
            contact_id=data["contact_id"],
            account_id=data.get("account_id"),
            stage=data["stage"],
            rules_version=data["rules_version"],
            score=float(data["score"]),
            ref_ms=int(data["ref_ms"]),
            first_event_ms=int(data["first_event_ms"]),
            event_count=int(data["event_count"]),
            updated_ms=int(data["updated_ms"]),
            contributions=dict(data["contributions"]),
            fired=list(data["fired"]),
            action_seq=dict(data["action_seq"]),
            velocity={int(k): int(v) for k, v in data["velocity"].items()},
            seen={bytes.fromhex(digest): int(t) for digest, t in data["seen"].items()},
            dedupe_floor_ms=int(data["dedupe_floor_ms"]),
            fit=float(data.get("fit", 0.0)),
            fit_contributions=dict(data.get("fit_contributions", {})),
            traits={k: (int(t), str(v)) for k, (t, v) in data.get("traits", {}).items()},
            cap_credits={
                cap: [(int(t), float(p)) for t, p in grants]
                for cap, grants in data.get("cap_credits", {}).items()
            },
            disqualified_ms=int(data.get("disqualified_ms", -1)),
            disqualified_by=data.get("disqualified_by"),
            requalified_ms=int(data.get("requalified_ms", -1)),
            assessed_ms=int(data.get("assessed_ms", data["ref_ms"])),
            due_ms=data.get("due_ms"),
            change_partition=int(data.get("change_partition", -1)),
            change_offsets=[int(o) for o in data.get("change_offsets", [])],
            alias_of=data.get("alias_of"),
            absorbed={str(k): int(t) for k, t in data.get("absorbed", {}).items()},
            consent=data.get("consent"),
            consent_ms=int(data.get("consent_ms", -1)),
        )


@dataclass(frozen=True, slots=True)
class LeadAction:
    """A threshold crossing or stage change, for routing and notification sinks."""

    action_id: str
    contact_id: str
    account_id: str | None
    kind: ActionKind
    name: str
    score: float
    previous_score: float
    stage: str
    previous_stage: str
    occurred_at: int
    emitted_at: int
    cause_event_id: str | None
    reasons: tuple[Reason, ...]
    rules_version: str
    fit: float = 0.0
    grade: str | None = None
    fit_reasons: tuple[Reason, ...] = ()
    traits: tuple[tuple[str, str], ...] = ()  # the profile traits fit rules read, for routing

    def to_dict(self) -> dict[str, Any]:
        return {
            "action_id": self.action_id,
            "contact_id": self.contact_id,
            "account_id": self.account_id,
            "kind": self.kind,
            "name": self.name,
            "score": out(self.score),
            "previous_score": out(self.previous_score),
            "stage": self.stage,
            "previous_stage": self.previous_stage,
            "occurred_at": self.occurred_at,
            "emitted_at": self.emitted_at,
            "cause_event_id": self.cause_event_id,
            "reasons": [r.to_dict() for r in self.reasons],
            "rules_version": self.rules_version,
            "fit": out(self.fit),
            "grade": self.grade,
            "fit_reasons": [r.to_dict() for r in self.fit_reasons],
            "traits": dict(self.traits),
        }


@dataclass(frozen=True, slots=True)
class ScoreChange:
    """Audit record: new_score = old_score - decay_applied + delta."""

    contact_id: str
    event_id: str
    event_type: str
    old_score: float
    new_score: float
    delta: float
    decay_applied: float
    reasons: tuple[Reason, ...]
    rules_version: str
    occurred_at: int
    processed_at: int
    old_fit: float = 0.0
    new_fit: float = 0.0
    fit_reasons: tuple[Reason, ...] = ()
    merged_from: str | None = None  # a merge: the contact whose lead was absorbed

    def to_dict(self) -> dict[str, Any]:
        return {
            "contact_id": self.contact_id,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "old_score": out(self.old_score),
            "new_score": out(self.new_score),
            "delta": out(self.delta),
            "decay_applied": out(self.decay_applied),
            "reasons": [r.to_dict() for r in self.reasons],
            "rules_version": self.rules_version,
            "occurred_at": self.occurred_at,
            "processed_at": self.processed_at,
            "old_fit": out(self.old_fit),
            "new_fit": out(self.new_fit),
            "fit_reasons": [r.to_dict() for r in self.fit_reasons],
            "merged_from": self.merged_from,
        }


@dataclass(frozen=True, slots=True)
class LeadState:
    """The published snapshot of one lead (compacted lead-state topic)."""

    contact_id: str
    account_id: str | None
    score: float
    current_score: float
    fit: float
    grade: str | None
    disqualified: bool
    stage: str
    velocity: int
    risk: RiskLevel
    next_action: str
    last_event_at: int
    event_count: int
    updated_at: int
    rules_version: str
    consent: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "contact_id": self.contact_id,
            "account_id": self.account_id,
            "score": out(self.score),
            "current_score": out(self.current_score),
            "fit": out(self.fit),
            "grade": self.grade,
            "disqualified": self.disqualified,
            "stage": self.stage,
            "velocity": self.velocity,
            "risk": self.risk,
            "next_action": self.next_action,
            "last_event_at": self.last_event_at,
            "event_count": self.event_count,
            "updated_at": self.updated_at,
            "rules_version": self.rules_version,
            "consent": self.consent,
        }
