"""Identity through the step (issue 22): merges and forwarding across partitions.

A ``Cluster`` runs the step for every partition of a small deployment with dict
stores, and delivers each hand-off record to its key's partition in an order
hypothesis picks (each partition's own records in order, as Kafka keeps them),
sometimes twice (an at_least_once replay). The laws: nothing is lost or counted
twice (the live leads' decayed scores add up to the pure core's over every
event), every id resolves to one live lead, and a merged-away lead is a stub.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import replace
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from leadscore.codecs.leads import decode_lead, encode_lead
from leadscore.scoring import EngagementEvent, LeadRecord, apply_event
from leadscore.scoring.engine import score_at
from leadscore.step.batch import Effects, Input, Output, process
from leadscore.step.privacy import SUPPRESSED_PREFIX, EraseRequest
from leadscore.step.wheel import Timers
from leadscore.stream.partitioning import key_partition
from tests.unit.test_step import ENCODERS, LIMITS, NOW, PARTITIONS, RULES, SLOT_MS

T0 = NOW - 3 * 86_400_000
HANDOFF = "handoff"
PRIVACY_KEY = b"unit-test-privacy-key"


class Cluster:
    """Every partition's step with its own store; hand-off records delivered on demand."""

    def __init__(self, seed: int = 0, replay: float = 0.0) -> None:
        self.leads: dict[bytes, bytes] = {}
        self.timers = Timers(SLOT_MS)
        self.pending: dict[int, list[Input]] = defaultdict(list)
        self.offsets: dict[str, int] = defaultdict(int)
        self.outputs: list[Output] = []
        self.dead: list[tuple[str, Input]] = []
        self.rng = random.Random(seed)
        self.replay = replay
        self.limits = replace(LIMITS, privacy_key=PRIVACY_KEY)

    def run(self, records: list[Input]) -> Effects:
        effects = process(
            records,
            lambda _p, key: self.leads.get(key),
            self.timers,
            RULES,
            NOW,
            self.limits,
            ENCODERS,
        )
        for key, (_partition, record) in effects.writes.items():
            if record is None:
                self.leads.pop(key, None)
            else:
                self.leads[key] = encode_lead(record)
        for output in effects.outputs:
            if output.destination == HANDOFF:
                assert output.key is not None
                self.deliver(output)
            else:
                self.outputs.append(output)
                if output.destination == "dlq":
                    reason = dict(output.headers)["leadscore.error.reason"].decode()
                    self.dead.append((reason, records[0]))
        return effects

    def deliver(self, output: Output) -> None:
        assert output.key is not None
        partition = key_partition(output.key, PARTITIONS)
        self.offsets[HANDOFF] += 1
        record = Input(
            HANDOFF,
            partition,
            self.offsets[HANDOFF],
            output.key,
            output.value,
            NOW,
            handoff=True,
            headers=output.headers,
        )
        self.pending[partition].append(record)
        if self.rng.random() < self.replay:  # at_least_once: delivered again later
            self.pending[partition].append(record)

    def event(self, contact: str, event_id: str, kind: str, at: int, **extra: Any) -> None:
        self.run_event(contact, event_id, kind, at, **extra)

    def run_event(self, contact: str, event_id: str, kind: str, at: int, **extra: Any) -> Effects:
        """One event on its key's partition; what the step made of it."""
        body = {"event_id": event_id, "contact_id": contact, "type": kind, "occurred_at": at}
        body.update(extra)
        key = contact.encode()
        self.offsets["events"] += 1
        partition = key_partition(key, PARTITIONS)
        value = orjson.dumps(body)
        return self.run([Input("events", partition, self.offsets["events"], key, value, at)])

    def step_once(self) -> bool:
        """Deliver the next hand-off record of one partition (picked at random)."""
        ready = [p for p, queue in self.pending.items() if queue]
        if not ready:
            return False
        partition = self.rng.choice(ready)
        self.run([self.pending[partition].pop(0)])
        return True

    def settle(self) -> None:
        for _ in range(10_000):
            if not self.step_once():
                return
        raise AssertionError("hand-off records still circulating after 10,000 deliveries")

    def lead(self, contact: str) -> LeadRecord | None:
        raw = self.leads.get(contact.encode())
        return None if raw is None else decode_lead(raw, contact.encode())

    def erase(self, contact: str, request_id: str) -> None:
        """An erase request on the privacy topic, keyed by the contact."""
        key = contact.encode()
        request = EraseRequest(request_id, contact, NOW)
        self.offsets["privacy"] += 1
        partition = key_partition(key, PARTITIONS)
        value = request.to_bytes()
        self.run([Input("privacy", partition, self.offsets["privacy"], key, value, privacy=True)])

    def live(self) -> dict[str, LeadRecord]:
        """Leads by contact (stubs and suppression entries left out)."""
        found = {
            key.decode(): decode_lead(raw, key)
            for key, raw in self.leads.items()
            if not key.startswith(SUPPRESSED_PREFIX)
        }
        return {c: r for c, r in found.items() if r.alias_of is None}

    def resolve(self, contact: str) -> str:
        """The live lead an id's events are scored on (following stubs)."""
        for _ in range(50):
            record = self.lead(contact)
            if record is None or record.alias_of is None:
                return contact
            contact = record.alias_of
        raise AssertionError(f"an alias loop from {contact}")


def core(events: list[tuple[str, str, int]]) -> float:
    """The pure core's score at NOW of all these events as one contact's."""
    record: LeadRecord | None = None
    for event_id, kind, at in events:
        ev = EngagementEvent(event_id=event_id, contact_id="all", type=kind, occurred_at=at)
        record = apply_event(record, ev, RULES, NOW).record
    return 0.0 if record is None else score_at(record, RULES, NOW)


def test_anonymous_page_views_join_the_known_lead_on_identify() -> None:
    cluster = Cluster()
    anon, known = "anon-7f3a", "ada@example.com"
    assert key_partition(anon.encode(), PARTITIONS) != key_partition(known.encode(), PARTITIONS)
    views = [(f"pv-{i}", "page_view", T0 + i * 60_000) for i in range(10)]
    for event_id, kind, at in views:
        cluster.event(anon, event_id, kind, at)
    cluster.event(known, "signup-1", "signup", T0 + 700_000)
    cluster.event(known, "id-1", "identify", T0 + 800_000, anonymous_id=anon)
    cluster.settle()

    ada = cluster.lead(known)
    assert ada is not None
    assert ada.alias_of is None
    everything = [*views, ("signup-1", "signup", T0 + 700_000), ("id-1", "identify", T0 + 800_000)]
    assert math.isclose(score_at(ada, RULES, NOW), core(everything), rel_tol=1e-12)
    assert ada.event_count == 12
    assert anon in ada.absorbed
    stub = cluster.lead(anon)
    assert stub is not None
    assert stub.alias_of == known
    assert stub.event_count == 0
    tombstones = [o for o in cluster.outputs if o.destination == "lead_state" and o.value is None]
    assert [o.key for o in tombstones] == [anon.encode()]
    changes = [
        orjson.loads(o.value or b"") for o in cluster.outputs if o.destination == "score_changes"
    ]
    (merge,) = [c for c in changes if c["event_type"] == "merge"]
    assert (merge["contact_id"], merge["merged_from"]) == (known, anon)
    assert merge["new_score"] == round(ada.score, 4)
    assert math.isclose(
        merge["old_score"] - merge["decay_applied"] + merge["delta"],
        merge["new_score"],
        abs_tol=1e-3,
    )

    # Later events keyed by the anonymous id are scored on the known lead.
    cluster.event(anon, "pv-late", "page_view", T0 + 900_000)
    cluster.settle()
    ada = cluster.lead(known)
    assert ada is not None
    assert ada.event_count == 13
    assert cluster.live().keys() == {known}


def test_a_blocked_anonymous_id_is_refused_and_nothing_merges() -> None:
    cluster = Cluster()
    cluster.event("null", "pv-1", "page_view", T0)
    cluster.event("bo@example.com", "id-1", "identify", T0 + 1, anonymous_id="null")
    cluster.settle()
    assert [reason for reason, _ in cluster.dead] == ["identity_refused"]
    assert cluster.live().keys() == {"null"}


def test_merging_back_the_other_way_is_refused_as_a_cycle() -> None:
    cluster = Cluster()
    cluster.event("a", "1", "signup", T0)
    cluster.event("b", "2", "download", T0 + 1)
    cluster.event("b", "3", "merge", T0 + 2, properties={"from": "a"})
    cluster.settle()
    cluster.event("a", "4", "merge", T0 + 3, properties={"from": "b"})  # a is an alias of b now
    cluster.settle()
    assert cluster.live().keys() == {"b"}
    b = cluster.lead("b")
    assert b is not None
    assert b.event_count == 4


CONTACTS = ["k1", "k2", "k3", "a1", "a2", "a3"]
KINDS = ["page_view", "email_open", "download", "signup", "demo_request"]

actions = st.lists(
    st.one_of(
        st.tuples(st.just("event"), st.sampled_from(CONTACTS), st.sampled_from(KINDS)),
        st.tuples(st.just("identify"), st.sampled_from(CONTACTS), st.sampled_from(CONTACTS)),
        st.tuples(st.just("merge"), st.sampled_from(CONTACTS), st.sampled_from(CONTACTS)),
        st.tuples(st.just("deliver"), st.just(""), st.just("")),
    ),
    max_size=40,
)


@given(actions, st.integers(0, 2**32), st.sampled_from([0.0, 0.3]))
def test_no_interleaving_of_merges_loses_or_doubles_an_event(plan, seed, replay) -> None:
    """Whatever the merges (chains, both ways at once, repeated), whatever order the
    partitions take their hand-off records in, and with replays: every event counts
    exactly once, on the lead its contact resolves to, and no alias loops."""
    cluster = Cluster(seed, replay)
    scored: list[tuple[str, str, int]] = []
    for n, (what, contact, other) in enumerate(plan):
        at = T0 + n * 1000
        if what == "deliver":
            cluster.step_once()
            continue
        event_id = f"e{n}"
        if what == "event":
            cluster.event(contact, event_id, other, at)
            scored.append((event_id, other, at))
        elif what == "identify":
            cluster.event(contact, event_id, "identify", at, anonymous_id=other)
            scored.append((event_id, "identify", at))
        else:
            cluster.event(contact, event_id, "merge", at, properties={"from": other})
            scored.append((event_id, "merge", at))
    cluster.settle()

    assert not [reason for reason, _ in cluster.dead if reason == "alias_loop"]
    live = cluster.live()
    total = sum(score_at(r, RULES, NOW) for r in live.values())
    assert math.isclose(total, core(scored), rel_tol=1e-9, abs_tol=1e-9)
    assert sum(r.event_count for r in live.values()) == len(scored)
    for contact in CONTACTS:
        cluster.resolve(contact)  # no loop
