"""Accounts (issue 23): an account's engagement is exactly the sum of its contacts' current
scores, whatever order and however often the contacts' shares arrive, and the account step
obeys the lead step's law (any split into batches gives the same outputs and table)."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter

import orjson
from hypothesis import given
from hypothesis import strategies as st

from leadscore.codecs.accounts import (
    TICK_HEADER,
    account_key,
    decode_account,
    encode_entry,
    member_key,
)
from leadscore.codecs.outputs import encoder
from leadscore.codecs.read_back import decode_output
from leadscore.scoring import LeadRecord, load_rules
from leadscore.scoring.accounts import (
    AccountRecord,
    Engagement,
    Share,
    apply_share,
    next_due,
    shares,
)
from leadscore.step.accounts import process_accounts
from leadscore.step.batch import Input
from leadscore.step.wheel import Timers

RULES = load_rules()
T0 = 1_762_000_000_000
DAY = 86_400_000
TOPIC = "leadscore.account-updates"
STATE = encoder("AccountState", "avro")
ACTION = encoder("AccountAction", "avro")

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


def play(plan: list) -> tuple[dict[str, LeadRecord], list[Share]]:
    """The leads as the writes leave them, and every share the writes sent."""
    leads: dict[str, LeadRecord] = {}
    sent: list[Share] = []
    clock: dict[str, int] = {}
    count: Counter[str] = Counter()
    for contact_n, account, score, days in plan:
        contact = f"c{contact_n}"
        before = leads.get(contact)
        ref = max(T0 + days * DAY, clock.get(contact, 0))  # never goes back
        clock[contact] = ref
        if score is None:
            after = None
            leads.pop(contact, None)
        else:
            count[contact] += 1  # every write is an event: the version grows
            after = LeadRecord(
                contact,
                account,
                "cold",
                RULES.version,
                score=score,
                ref_ms=ref,
                event_count=count[contact],
            )
            leads[contact] = after
        sent.extend(shares(contact, before, after, RULES))
    return leads, sent


def want(leads: dict[str, LeadRecord], account: str, t: int) -> float:
    return sum(
        r.score * RULES.decay_factor(t - r.ref_ms)
        for r in leads.values()
        if r.account_id == account
    )


def inputs(sent: list[Share], partition: int = 0) -> list[Input]:
    return [
        Input(TOPIC, partition, i, s.account_id.encode(), orjson.dumps(s.to_dict()))
        for i, s in enumerate(sent)
    ]


def run(records: list[Input], splits: list[int], now: int) -> tuple[list, dict]:
    """``records`` through the account step in batches cut at ``splits``: its outputs and
    the table (as bytes) it leaves."""
    table: dict[bytes, bytes] = {}
    timers = Timers(10_000)
    outputs = []
    cuts = sorted({0, len(records), *(c for c in splits if 0 < c < len(records))})
    for lo, hi in itertools.pairwise(cuts):
        effects = process_accounts(
            records[lo:hi], lambda _p, k: table.get(k), timers, RULES, now, STATE, ACTION
        )
        outputs += [(o.destination, o.key, o.value) for o in effects.outputs]
        for key, (_, value) in effects.writes.items():
            if value is None:
                table.pop(key, None)
            else:
                table[key] = encode_entry(value)
    return outputs, table


def replayed(sent: list[Share], rng: random.Random) -> list[Share]:
    """One contact's shares as an account may receive them under at_least_once: in their
    order, with crashes making the lead's worker send a stretch again from a point no
    earlier than the previous restart's (its committed offset only moves forward)."""
    got: list[Share] = []
    start = end = 0
    while end < len(sent):
        end = rng.randint(end + 1, len(sent))
        got += sent[start:end]
        start = rng.randint(start, end)  # a crash: sent again from here
    return got + sent[start:]  # and once more after the last


def interleaved(streams: list[list[Share]], rng: random.Random) -> list[Share]:
    """The contacts' streams merged in any order, each kept in its own order."""
    queues = [list(s) for s in streams if s]
    merged = []
    while queues:
        queue = rng.choice(queues)
        merged.append(queue.pop(0))
        if not queue:
            queues.remove(queue)
    return merged


@given(writes, st.randoms(use_true_random=False), st.integers(60, 180))
def test_an_account_is_the_sum_of_its_contacts_current_scores_however_shares_arrive(
    plan, rng: random.Random, days: int
) -> None:
    leads, sent = play(plan)
    by_contact: dict[str, list[Share]] = {}
    for share in sent:
        by_contact.setdefault(share.contact_id, []).append(share)
    # each contact's shares in order, replayed in stretches; contacts in any order
    arriving = interleaved([replayed(s, rng) for s in by_contact.values()], rng)
    _, table = run(inputs(arriving), [rng.randrange(len(arriving) + 1) for _ in range(3)], T0)
    t = T0 + days * DAY
    for account in ("a", "b", "c"):
        raw = table.get(account_key(account))
        record = decode_account(raw) if raw else None
        got = record.engagement.at(t, RULES) if record else 0.0
        expected = want(leads, account, t)
        assert math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-6), (account, got, expected)
        members = {c for c, r in leads.items() if r.account_id == account}
        assert (record.contacts if record else 0) == len(members)
        if record is not None:  # every member is tracked (7 contacts, 50 tracked)
            assert set(record.tracked) == members
        # a contact that left keeps no record in the account
        kept = {k for k in table if k.startswith(member_key(account, ""))}
        assert kept == {member_key(account, c) for c in members}


def settled(outputs: list) -> tuple[list, dict]:
    """Outputs as a reader of the topics sees them in the end: every action and dead
    letter in order, and the last state of each account (a compacted topic)."""
    last = {key: value for destination, key, value in outputs if destination == "account_state"}
    return [o for o in outputs if o[0] != "account_state"], last


@given(writes, st.lists(st.integers(0, 60), max_size=4))
def test_any_split_of_the_updates_into_batches_gives_the_same_actions_states_and_table(
    plan, splits: list[int]
) -> None:
    _, sent = play(plan)
    records = inputs(sent + sent[: len(sent) // 2])  # with replayed ones
    outputs, table = run(records, [], T0 + 61 * DAY)
    split_outputs, split_table = run(records, splits, T0 + 61 * DAY)
    assert split_table == table
    assert settled(split_outputs) == settled(outputs)
    # one state per touched account per batch
    assert len([o for o in outputs if o[0] == "account_state"]) == len(settled(outputs)[1])


def test_a_share_already_held_changes_nothing_and_sends_nothing() -> None:
    share = Share("acme", "ada", 40.0, T0, 3)
    first = apply_share(None, None, share, RULES, T0)
    assert first.member is not None
    again = apply_share(first.record, first.member, share, RULES, T0)
    older = apply_share(first.record, first.member, Share("acme", "ada", 90.0, T0, 2), RULES, T0)
    assert not again.changed
    assert again.actions == ()
    assert again.record is first.record
    assert not older.changed
    assert older.record.score == 40.0
    left = apply_share(
        first.record, first.member, Share("acme", "ada", 0.0, T0, 3, True), RULES, T0
    )
    assert left.changed
    assert left.member is None  # deleted: no id kept of a contact that left
    assert left.record.contacts == 0
    gone = apply_share(left.record, None, Share("acme", "ada", 0.0, T0, 3, True), RULES, T0)
    assert not gone.changed  # leaving an account it is not in: a replay


def test_a_contact_that_moves_takes_its_current_score_with_it() -> None:
    before = LeadRecord("ada", "a", "hot", RULES.version, score=40.0, ref_ms=T0, event_count=2)
    after = LeadRecord("ada", "b", "hot", RULES.version, score=40.0, ref_ms=T0, event_count=3)
    moved = shares("ada", before, after, RULES)
    assert [(s.account_id, s.score, s.left, s.version) for s in moved] == [
        ("a", 0.0, True, 3),
        ("b", 40.0, False, 3),
    ]
    _, table = run(inputs(shares("ada", None, before, RULES) + moved), [], T0)
    a, b = (decode_account(table[account_key(x)]) for x in "ab")
    assert (a.score, a.contacts, b.score, b.contacts) == (0.0, 0, 40.0, 1)


def test_a_stub_and_a_lead_without_an_account_count_nothing() -> None:
    lead = LeadRecord("ada", "a", "hot", RULES.version, score=40.0, ref_ms=T0, event_count=2)
    stub = LeadRecord("ada", None, "", RULES.version, alias_of="bob")
    assert [(s.account_id, s.left) for s in shares("ada", lead, stub, RULES)] == [("a", True)]
    assert shares("ada", None, stub, RULES) == []
    nobody = LeadRecord("eve", None, "hot", RULES.version, score=9.0, ref_ms=T0, event_count=1)
    assert shares("eve", None, nobody, RULES) == []
    same = LeadRecord("ada", "a", "warm", RULES.version, score=40.0, ref_ms=T0, event_count=2)
    assert shares("ada", lead, same, RULES) == []  # a stage change alone: nothing to tell


def test_stages_thresholds_and_their_actions_follow_the_lead_semantics() -> None:
    accounts = RULES.accounts  # unaware 0, engaged 50, surging 150; account_surge 150 (-30)
    assert [s.name for s in accounts.stages] == ["unaware", "engaged", "surging"]
    sent = [
        Share("acme", f"c{i}", 40.0, T0 + i, 1, persona="vp" if i else "manager") for i in range(4)
    ]
    outputs, table = run(inputs(sent), [], T0 + 10)
    acts = [decode_output(v) for d, _, v in outputs if d == "account_actions"]
    assert [(a["kind"], a["name"], round(a["score"])) for a in acts] == [
        ("account_stage_changed", "engaged", 80),
        ("account_stage_changed", "surging", 160),
        ("account_threshold_crossed", "account_surge", 160),
    ]
    assert acts[-1]["top_contacts"][0]["contact_id"] == "c3"  # the newest, least decayed
    assert len({a["action_id"] for a in acts}) == 3
    states = [decode_output(v) for d, _, v in outputs if d == "account_state"]
    assert states[-1]["contacts"] == 4
    assert states[-1]["engaged_contacts"] == 4
    assert states[-1]["coverage"] == ["manager", "vp"]
    record = decode_account(table[account_key("acme")])
    # decay alone takes it below 150 - 30 (re-arm) and then below 150 (stage): the earlier
    due = next_due(record, RULES)
    assert due is not None
    assert record.due_ms == due
    assert math.isclose(record.engagement.at(due, RULES), 150.0, abs_tol=1e-3)
    # a tick at that time: the stage drops, one action, and the account is re-scheduled
    tick = Input(TOPIC, 0, 99, b"tick", b"{}", headers=((TICK_HEADER, b"1"),))
    timers = Timers(10_000)
    timers.wheel(0, due - 10_000).reschedule("acme", None, record.due_ms)
    effects = process_accounts(
        [tick], lambda _p, k: table.get(k), timers, RULES, due + 10_000, STATE, ACTION
    )
    kinds = [
        decode_output(o.value)["name"]
        for o in effects.outputs
        if o.destination == "account_actions"
    ]
    assert kinds == ["engaged"]
    ticked = effects.writes[account_key("acme")][1]
    assert isinstance(ticked, AccountRecord)
    assert ticked.stage == "engaged"


def test_an_unreadable_update_is_dead_lettered_and_the_batch_goes_on() -> None:
    good = Share("acme", "ada", 40.0, T0, 1)
    records = [
        Input(TOPIC, 0, 0, b"acme", b"not json"),
        Input(TOPIC, 0, 1, b"other", orjson.dumps(good.to_dict())),  # key is not its account
        *inputs([Share("acme", "x" * 300, 1.0, T0, 1)]),  # an id events could not have
        *inputs([Share("acme", "eve", math.inf, T0, 1)]),
        *inputs([good]),
    ]
    outputs, table = run(records, [], T0)
    assert [d for d, _, _ in outputs[:4]] == ["dlq", "dlq", "dlq", "dlq"]
    assert decode_account(table[account_key("acme")]).contacts == 1
    assert member_key("acme", "ada") in table


def test_engagement_adds_in_any_order() -> None:
    e = Engagement().add(10.0, T0, RULES).add(5.0, T0 - DAY, RULES)
    f = Engagement().add(5.0, T0 - DAY, RULES).add(10.0, T0, RULES)
    assert math.isclose(e.at(T0 + DAY, RULES), f.at(T0 + DAY, RULES))
