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
after (``account_deltas``): a scored event (the lead's score now, minus its
score before decayed to now), a contact that moves to another account (all of
its score leaves one and joins the other), and a lead that is deleted (a
merged-away lead leaves its account; its survivor's write adds the merged
score to the survivor's; an erased lead leaves its account). Stubs, suppression
entries and leads without events count nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from leadscore.scoring.records import LeadRecord
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


@dataclass(frozen=True, slots=True)
class AccountDelta:
    """A change of one account's engagement caused by one lead write."""

    account_id: str
    contact_id: str
    delta: float
    at_ms: int


def _counts(record: LeadRecord | None) -> bool:
    return (
        record is not None
        and record.alias_of is None
        and record.account_id is not None
        and record.event_count > 0
    )


def account_deltas(
    contact_id: str, before: LeadRecord | None, after: LeadRecord | None, rules: Rules
) -> list[AccountDelta]:
    """What a lead write (``before`` -> ``after``; None: no lead) changes in the
    engagement of the accounts involved."""
    old = before if _counts(before) else None
    new = after if _counts(after) else None
    if old is not None and new is not None and old.account_id == new.account_id:
        delta = new.score - old.score * rules.decay_factor(new.ref_ms - old.ref_ms)
        if delta == 0.0:
            return []
        return [AccountDelta(str(new.account_id), contact_id, delta, new.ref_ms)]
    found = []
    if old is not None:
        found.append(AccountDelta(str(old.account_id), contact_id, -old.score, old.ref_ms))
    if new is not None:
        found.append(AccountDelta(str(new.account_id), contact_id, new.score, new.ref_ms))
    return found
