"""Account engagement (issue 23): the exact roll-up of its contacts' decaying scores. Pure.

With one half-life ``h`` every lead's score decays as ``s * 2^(-(t - ref) / h)``,
so a sum of leads' scores decays the same way: an account's engagement at time
``t`` is one number ``E`` at a reference time ``R`` decayed to ``t``. A change of
one lead's score is a delta at some time ``r``; brought to a common reference,
deltas add, in any order:

    E(t) = sum over deltas of d * 2^(-(t - r) / h)

so the account need not know its contacts' scores, and a late delta is as exact
as any other.

What changes an account is always a lead write, seen as its record before and
after (``shares``): a scored event (the lead's score now, minus its score
before decayed to now), a contact that moves to another account (all of its
score leaves one and joins the other), and a lead that is deleted (a
merged-away lead leaves its account; its survivor's write adds the merged
score to the survivor's; an erased lead leaves its account). Stubs, suppression
entries and leads without events count nothing.

Between workers the lead's side sends each account not a delta but the
contact's share as it now is (``Share``: score, reference time, the lead's
event count as its version). The account's side keeps each member's last
share and adds the difference: a share of a version it has, or a leaving share
for a contact it does not have, changes nothing, so at_least_once replays never
count twice, and the engagement stays the sum of the members' shares.

A contact that leaves has no record in the account any more (an erased
contact's id is not kept). An id that stops holding a lead (merged into
another, erased) leaves with the version ``GONE``, above any other; and an
event that reaches such an id sends its account that leaving share again: under
at_least_once, a run a crash lost may have sent a share for the id (outputs land
before state) that the replay, finding the id a stub or erased, would never
otherwise take back. A replay re-sends a contact's shares in their order
(one key, one partition), so the last share an account gets for a contact is
its latest even when an older copy arrives after a leaving one; and a contact
erased and later back (consent granted again) starts at version 1 in an
account that has forgotten it.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import msgspec

from leadscore.scoring.engine import ROUNDING, next_seq
from leadscore.scoring.ranking import current_from_key, rank_key
from leadscore.scoring.records import LeadRecord, out
from leadscore.scoring.rules import Rules


@dataclass(frozen=True, slots=True)
class Engagement:
    """An account's engagement: ``score`` as of ``ref_ms``."""

    score: float = 0.0
    ref_ms: int = 0

    def at(self, t_ms: int, rules: Rules) -> float:
        """The engagement decayed to ``t_ms`` (a time before ``ref_ms``: as of ``ref_ms``,
        as a lead's score is not known before its latest event)."""
        return self.score * rules.decay_factor(t_ms - self.ref_ms)

    def add(self, delta: float, at_ms: int, rules: Rules) -> Engagement:
        """With ``delta`` (a change at ``at_ms``) added; the later time is the reference."""
        if at_ms <= self.ref_ms:
            return Engagement(
                self.score + delta * rules.decay_factor(self.ref_ms - at_ms), self.ref_ms
            )
        return Engagement(self.at(at_ms, rules) + delta, at_ms)


def _counts(record: LeadRecord | None) -> bool:
    return (
        record is not None
        and record.alias_of is None
        and record.account_id is not None
        and record.event_count > 0
    )


def persona_of(record: LeadRecord, rules: Rules) -> str | None:
    trait = rules.accounts.persona_trait
    if trait is None:
        return None
    held = record.traits.get(trait)
    return None if held is None else held[1]


@dataclass(frozen=True, slots=True)
class Share:
    """What a contact now brings to an account: its score as of ``ref_ms`` (``left``: nothing
    any more). ``version`` is the lead's event count, which only grows; a share that leaves
    wins over one of the same version."""

    account_id: str
    contact_id: str
    score: float
    ref_ms: int
    version: int
    left: bool = False
    persona: str | None = None

    @property
    def order(self) -> tuple[int, bool]:
        return (self.version, self.left)

    def to_dict(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "contact_id": self.contact_id,
            "score": self.score,
            "ref_ms": self.ref_ms,
            "version": self.version,
            "left": self.left,
            "persona": self.persona,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Share:
        return cls(
            str(data["account_id"]),
            str(data["contact_id"]),
            float(data["score"]),
            int(data["ref_ms"]),
            int(data["version"]),
            bool(data["left"]),
            None if data.get("persona") is None else str(data["persona"]),
        )


def shares(
    contact_id: str, before: LeadRecord | None, after: LeadRecord | None, rules: Rules
) -> list[Share]:
    """The shares a lead write (``before`` -> ``after``) sends to accounts: none if nothing
    an account sees changed; a leaving share to the old account when the contact moved,
    merged away or was erased; the new share to its account."""
    old = before if _counts(before) else None
    new = after if _counts(after) else None
    if old is None and new is None:
        return []
    found = []
    if new is not None:
        share = Share(
            str(new.account_id),
            contact_id,
            new.score,
            new.ref_ms,
            new.event_count,
            persona=persona_of(new, rules),
        )
        if old is not None and old.account_id == new.account_id:
            seen = (old.score, old.ref_ms, old.event_count, persona_of(old, rules))
            if seen == (share.score, share.ref_ms, share.version, share.persona):
                return []
            return [share]
        found.append(share)
    if old is not None:
        version = new.event_count if new is not None else GONE
        found.insert(0, Share(str(old.account_id), contact_id, 0.0, old.ref_ms, version, True))
    return found


#: The version of a leaving share for an id that holds no lead any more (merged into
#: another, or erased): it wins over any share sent for the id before, also one a run
#: lost in a crash sent with a version the replay never reaches.
GONE = 2**53


def gone(account_id: str, contact_id: str, at_ms: int) -> Share:
    """A leaving share for an id that cannot hold a lead (a stub, an erased contact)."""
    return Share(account_id, contact_id, 0.0, at_ms, GONE, True)


@dataclass(frozen=True, slots=True)
class Member:
    """An account's record of one contact in it: its last share. A contact that leaves
    has none (its record is deleted: an erased contact's id is not kept)."""

    score: float
    ref_ms: int
    version: int
    persona: str | None = None

    @property
    def order(self) -> tuple[int, bool]:
        return (self.version, False)


class Tracked(msgspec.Struct, frozen=True, array_like=True):
    """A contact an account keeps by name (one of its highest scores). A msgspec struct:
    an account record holds up to ``track_contacts`` of them, decoded at every update."""

    score: float
    ref_ms: int
    persona: str | None


@dataclass(slots=True)
class AccountRecord:
    """Everything kept about one account. ``score`` is its engagement as of ``ref_ms``."""

    account_id: str
    stage: str
    rules_version: str
    score: float = 0.0
    ref_ms: int = 0
    contacts: int = 0  # members with a share
    fired: list[str] = field(default_factory=list)
    action_seq: dict[str, int] = field(default_factory=dict)
    tracked: dict[str, Tracked] = field(default_factory=dict)  # at most track_contacts
    #: a contact with a share left ``tracked`` for a higher one: the engaged count and
    #: coverage may then be short (``engaged_capped``)
    overflowed: bool = False
    assessed_ms: int = 0
    updated_ms: int = 0
    due_ms: int | None = None  # when decay next changes the stage or re-arms a threshold

    @property
    def engagement(self) -> Engagement:
        return Engagement(self.score, self.ref_ms)


@dataclass(frozen=True, slots=True)
class AccountAction:
    action_id: str
    account_id: str
    kind: str  # account_threshold_crossed | account_stage_changed
    name: str
    score: float
    previous_score: float
    stage: str
    previous_stage: str
    occurred_at: int
    emitted_at: int
    top_contacts: tuple[tuple[str, float], ...]
    rules_version: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "action_id": self.action_id,
            "account_id": self.account_id,
            "kind": self.kind,
            "name": self.name,
            "score": self.score,
            "previous_score": self.previous_score,
            "stage": self.stage,
            "previous_stage": self.previous_stage,
            "occurred_at": self.occurred_at,
            "emitted_at": self.emitted_at,
            "top_contacts": [{"contact_id": c, "score": s} for c, s in self.top_contacts],
            "rules_version": self.rules_version,
        }


def new_account(account_id: str, rules: Rules) -> AccountRecord:
    return AccountRecord(account_id, rules.accounts.stages[0].name, rules.version)


def _key(score: float, ref_ms: int, rules: Rules) -> float:
    """log2 of the current score plus the time in half-lives: orders current scores at any
    time (``scoring.ranking``); scores at or below zero first."""
    if score <= 0.0:
        return -math.inf
    return math.log2(score) + ref_ms / rules.half_life_ms


def standing(record: AccountRecord, rules: Rules, at_ms: int) -> list[tuple[str, float, Tracked]]:
    """The tracked contacts with their scores decayed to ``at_ms``, highest first (ties by
    id): one decay per contact, for everything an answer or a state says about them."""
    half_life = rules.half_life_ms
    found = [
        (
            contact,
            t.score * math.pow(2.0, (t.ref_ms - at_ms) / half_life)
            if at_ms > t.ref_ms
            else t.score,
            t,
        )
        for contact, t in record.tracked.items()
    ]
    found.sort(key=lambda item: (-item[1], item[0]))
    return found


def top_contacts(
    record: AccountRecord, rules: Rules, at_ms: int, limit: int = 5
) -> tuple[tuple[str, float], ...]:
    """The contacts with the highest current scores, highest first (ties by id)."""
    return tuple((c, out(score)) for c, score, _ in standing(record, rules, at_ms)[:limit])


def engaged(
    ranked: list[tuple[str, float, Tracked]], rules: Rules
) -> list[tuple[str, float, Tracked]]:
    """Of ``standing``'s contacts, those at or above the engaged floor."""
    floor = rules.accounts.engaged_floor
    return [item for item in ranked if item[1] >= floor]


def coverage(engaged_contacts: list[tuple[str, float, Tracked]]) -> list[str]:
    """The distinct personas of engaged contacts, sorted."""
    return sorted({t.persona for _, _, t in engaged_contacts if t.persona is not None})


def _track(record: AccountRecord, contact: str, share: Share, rules: Rules) -> None:
    tracked = record.tracked
    tracked.pop(contact, None)
    if share.left:
        return
    tracked[contact] = Tracked(share.score, share.ref_ms, share.persona)
    if len(tracked) > rules.accounts.track_contacts:
        lowest = min(tracked, key=lambda c: (_key(tracked[c].score, tracked[c].ref_ms, rules), c))
        del tracked[lowest]
        record.overflowed = True


@dataclass(frozen=True, slots=True)
class Applied:
    record: AccountRecord
    member: Member | None  # the contact's record now (None: not in the account)
    actions: tuple[AccountAction, ...]
    #: False: the share changed nothing (a version the account had, or a contact that
    #: leaves an account it is not in: a replay, or a copy arriving late)
    changed: bool = True


def apply_share(
    record: AccountRecord | None, member: Member | None, share: Share, rules: Rules, now_ms: int
) -> Applied:
    """An account after one contact's share (``member``: that contact's last share here)."""
    if record is None:
        record = new_account(share.account_id, rules)
    if (member is not None and share.order <= member.order) or (member is None and share.left):
        return Applied(record, member, (), changed=False)
    updated = replace(
        record,
        fired=list(record.fired),
        action_seq=dict(record.action_seq),
        tracked=dict(record.tracked),
        updated_ms=now_ms,
        rules_version=rules.version,
    )
    engagement = record.engagement
    if member is not None:
        engagement = engagement.add(-member.score, member.ref_ms, rules)
        updated.contacts -= 1
    if not share.left:
        engagement = engagement.add(share.score, share.ref_ms, rules)
        updated.contacts += 1
    if updated.contacts == 0:
        engagement = Engagement(0.0, engagement.ref_ms)  # no float residue in an empty account
    updated.score, updated.ref_ms = engagement.score, engagement.ref_ms
    _track(updated, share.contact_id, share, rules)
    at = max(updated.ref_ms, record.assessed_ms)
    actions = assess(record, updated, rules, at, now_ms)
    stored = None if share.left else Member(share.score, share.ref_ms, share.version, share.persona)
    return Applied(updated, stored, tuple(actions))


def apply_tick(record: AccountRecord, rules: Rules, now_ms: int) -> Applied:
    """Re-assess an account at processing time ``now_ms``: decay-driven changes."""
    updated = replace(
        record,
        fired=list(record.fired),
        action_seq=dict(record.action_seq),
        tracked=dict(record.tracked),
        updated_ms=now_ms,
    )
    actions = assess(record, updated, rules, max(now_ms, record.assessed_ms), now_ms)
    return Applied(updated, None, tuple(actions))


def assess(
    before: AccountRecord, updated: AccountRecord, rules: Rules, at_ms: int, now_ms: int
) -> list[AccountAction]:
    """Set ``updated``'s stage and fired thresholds for its engagement at ``at_ms``; the
    actions due (lead semantics: a threshold fires once per crossing and re-arms below
    its score minus its hysteresis)."""
    accounts = rules.accounts
    level = out(updated.engagement.at(at_ms, rules))
    previous = out(before.engagement.at(max(before.assessed_ms, before.ref_ms), rules))
    updated.assessed_ms = at_ms
    updated.stage = accounts.stage_for(level)
    known = {t.name for t in accounts.thresholds}
    updated.fired = [name for name in updated.fired if name in known]
    actions = []

    def add(kind: str, name: str) -> None:
        seq = next_seq(updated.action_seq, kind, name)
        actions.append(
            AccountAction(
                action_id=f"{updated.account_id}:{kind}:{name}:{seq}",
                account_id=updated.account_id,
                kind=kind,
                name=name,
                score=level,
                previous_score=previous,
                stage=updated.stage,
                previous_stage=before.stage,
                occurred_at=at_ms,
                emitted_at=now_ms,
                top_contacts=top_contacts(updated, rules, at_ms),
                rules_version=rules.version,
            )
        )

    if updated.stage != before.stage:
        add("account_stage_changed", updated.stage)
    for threshold in accounts.thresholds:
        if threshold.name in updated.fired:
            if level < threshold.score - threshold.hysteresis:
                updated.fired.remove(threshold.name)
        elif level >= threshold.score:
            updated.fired.append(threshold.name)
            add("account_threshold_crossed", threshold.name)
    return actions


def next_due(record: AccountRecord, rules: Rules) -> int | None:
    """When decay alone next takes the account below its stage or re-arms a threshold."""
    s = record.score
    if s <= 0.0:
        return None
    accounts = rules.accounts
    names = [stage.name for stage in accounts.stages]
    targets = []
    if record.stage in names and names.index(record.stage) > 0:
        targets.append(accounts.stages[names.index(record.stage)].min_score)
    for threshold in accounts.thresholds:
        if threshold.name in record.fired:
            targets.append(threshold.score - threshold.hysteresis)
    due: int | None = None
    for boundary in targets:
        target = boundary - ROUNDING  # as engine.crossing_at
        if target <= 0.0:
            continue
        at = (
            record.ref_ms
            if target >= s
            else record.ref_ms + math.ceil(rules.half_life_ms * math.log2(s / target))
        )
        due = at if due is None else min(due, at)
    return due


class EngagementIndex:
    """Each owned partition's accounts by a key that orders them as their current
    engagement does at any time (``scoring.ranking.rank_key``): the most engaged accounts
    without decaying every one. In memory; rebuilt from the account records."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self.keys: dict[int, dict[str, tuple[int, float]]] = {}

    def put(self, partition: int, record: AccountRecord) -> None:
        self.keys.setdefault(partition, {})[record.account_id] = rank_key(
            record.score, record.ref_ms, self.rules.half_life_ms
        )

    def rebuild(self, partition: int, records: Iterable[AccountRecord]) -> None:
        self.keys[partition] = {}
        for record in records:
            self.put(partition, record)

    def keep_only(self, partitions: Iterable[int]) -> None:
        keep = set(partitions)
        for partition in [p for p in self.keys if p not in keep]:
            del self.keys[partition]

    def top(self, partitions: Iterable[int], n: int, now_ms: int) -> list[tuple[str, float]]:
        """The ``n`` most engaged accounts of ``partitions``, engagement decayed to now."""
        half_life = self.rules.half_life_ms
        found = heapq.nlargest(
            n,
            (item for p in partitions for item in self.keys.get(p, {}).items()),
            key=lambda item: (item[1], item[0]),
        )
        return [(account, out(current_from_key(key, now_ms, half_life))) for account, key in found]
