"""Account engagement (issue 23): the roll-up of lead writes' deltas, in any order, is
exactly the sum of the account's contacts' current scores."""

from __future__ import annotations

import math
import random

from hypothesis import given
from hypothesis import strategies as st

from leadscore.scoring import LeadRecord, load_rules
from leadscore.scoring.accounts import Engagement, account_deltas

RULES = load_rules()
T0 = 1_762_000_000_000
DAY = 86_400_000

# A history of lead writes: (contact, account or None, score, days after T0), or a
# deletion (contact, None, None, days): a merged-away or erased lead.
writes = st.lists(
    st.tuples(
        st.integers(0, 6),
        st.one_of(st.none(), st.sampled_from(["a", "b", "c"])),
        st.one_of(st.none(), st.floats(min_value=-40, max_value=300)),
        st.integers(0, 60),
    ),
    max_size=40,
)


def play(plan: list) -> tuple[dict[str, LeadRecord], list]:
    """The leads as the writes leave them, and every delta the writes caused."""
    leads: dict[str, LeadRecord] = {}
    deltas = []
    clock = {}
    for contact_n, account, score, days in plan:
        contact = f"c{contact_n}"
        before = leads.get(contact)
        # a lead's reference time never goes back
        ref = max(T0 + days * DAY, clock.get(contact, 0))
        clock[contact] = ref
        if score is None:
            after = None
            leads.pop(contact, None)
        else:
            after = LeadRecord(
                contact, account, "cold", RULES.version, score=score, ref_ms=ref, event_count=1
            )
            leads[contact] = after
        deltas.extend(account_deltas(contact, before, after, RULES))
    return leads, deltas


@given(writes, st.randoms(use_true_random=False), st.integers(60, 180))  # after every write
def test_an_account_is_the_sum_of_its_contacts_current_scores_in_any_arrival_order(
    plan, rng: random.Random, days: int
) -> None:
    leads, deltas = play(plan)
    rng.shuffle(deltas)  # the account's partition may take them in any order
    accounts: dict[str, Engagement] = {}
    for d in deltas:
        accounts[d.account_id] = accounts.get(d.account_id, Engagement()).add(
            d.delta, d.at_ms, RULES
        )
    t = T0 + days * DAY
    for account in ("a", "b", "c"):
        want = sum(
            r.score * RULES.decay_factor(t - r.ref_ms)
            for r in leads.values()
            if r.account_id == account
        )
        got = accounts.get(account, Engagement()).at(t, RULES)
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-6), (account, got, want)


def test_a_contact_that_moves_takes_its_current_score_with_it() -> None:
    before = LeadRecord("ada", "a", "hot", RULES.version, score=40.0, ref_ms=T0, event_count=2)
    after = LeadRecord("ada", "b", "hot", RULES.version, score=40.0, ref_ms=T0, event_count=2)
    moved = account_deltas("ada", before, after, RULES)
    assert [(d.account_id, d.delta) for d in moved] == [("a", -40.0), ("b", 40.0)]
    assert sum(d.delta for d in moved) == 0.0  # the total over accounts is kept


def test_a_stub_and_a_lead_without_an_account_count_nothing() -> None:
    lead = LeadRecord("ada", "a", "hot", RULES.version, score=40.0, ref_ms=T0, event_count=2)
    stub = LeadRecord("ada", None, "", RULES.version, alias_of="bob")
    assert [(d.account_id, d.delta) for d in account_deltas("ada", lead, stub, RULES)] == [
        ("a", -40.0)
    ]
    assert account_deltas("ada", None, stub, RULES) == []
    nobody = LeadRecord("eve", None, "hot", RULES.version, score=9.0, ref_ms=T0, event_count=1)
    assert account_deltas("eve", None, nobody, RULES) == []
