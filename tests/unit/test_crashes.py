"""Identity through crashes (issue 22): the step on a model of the at_least_once worker.

``Broker`` holds the logs of the input topics (events, hand-off, privacy) per
partition. ``Worker`` is the at_least_once pipeline in miniature
(``leadscore/stream/pipeline.py``): it takes a batch of records from any of its
partitions, sends the batch's outputs at once (acknowledged), keeps its lead
writes in flight (up to 4 batches; the step reads the newest batch in flight
before the store), lands the oldest batch in the store, and commits the offsets
of landed records. A crash drops the batches in flight and reads again from the
committed offsets, in another order across topics: a record is replayed on state
that may be behind the outputs already sent, or ahead of them.

The laws, over people with anonymous and duplicate ids merged by identify and
merge events, events on their key's partition or another (a producer's random
partitioner), and erasures: each kept person ends as one live lead on their known
id with the pure core's event count and score over all their events; every other
id holds no lead, and its last lead-state record is a tombstone (or it has none);
an erased person holds no lead on any id. Every person belongs to an account: the
account agent over the account updates the worker sent (replays included) ends with
each account the sum of its kept people's scores.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass, field, replace

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from leadscore.codecs.accounts import account_key, decode_account, encode_entry, member_key
from leadscore.codecs.leads import decode_lead, encode_lead
from leadscore.codecs.outputs import encoder
from leadscore.scoring import EngagementEvent, LeadRecord, apply_event
from leadscore.scoring.engine import score_at
from leadscore.step.accounts import process_accounts
from leadscore.step.batch import Effects, Input, process
from leadscore.step.privacy import EraseRequest
from leadscore.step.wheel import Timers
from leadscore.stream.partitioning import key_partition
from tests.unit.test_step import ENCODERS, LIMITS, NOW, PARTITIONS, RULES, SLOT_MS

T0 = NOW - 86_400_000
DEPTH = 4  # batches in flight, as leadscore/stream/pipeline.py keeps them
INPUTS = ("events", "handoff", "privacy")
KINDS = ["page_view", "email_open", "download", "signup", "demo_request"]
LIMITS_WITH_KEY = replace(LIMITS, privacy_key=b"unit-test-privacy-key")

Position = tuple[str, int]  # topic, partition


@dataclass(frozen=True)
class Record:
    key: bytes
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class Broker:
    logs: dict[Position, list[Record]] = field(default_factory=lambda: defaultdict(list))
    lead_state: dict[bytes, list[bytes | None]] = field(default_factory=lambda: defaultdict(list))

    def append(self, topic: str, partition: int, record: Record) -> None:
        self.logs[(topic, partition)].append(record)

    def send(self, effects: Effects) -> None:
        """A batch's outputs, acknowledged: hand-off records are inputs again."""
        for output in effects.outputs:
            assert output.key is not None or output.destination not in ("handoff", "lead_state")
            if output.destination == "handoff":
                partition = key_partition(output.key or b"", PARTITIONS)
                self.append(
                    "handoff", partition, Record(output.key or b"", output.value, output.headers)
                )
            elif output.destination == "privacy":
                partition = output.partition
                assert partition is not None
                self.append("privacy", partition, Record(output.key or b"", output.value))
            elif output.destination == "lead_state":
                self.lead_state[output.key or b""].append(output.value)
            elif output.destination == "account_updates":
                partition = key_partition(output.key or b"", PARTITIONS)
                self.append("account-updates", partition, Record(output.key or b"", output.value))


@dataclass
class Batch:
    effects: Effects
    ends: dict[Position, int]  # the next offset of each position it read


class Worker:
    """One worker owning every partition, under at_least_once."""

    def __init__(self, broker: Broker, rng: random.Random, handoffs_first: bool = True) -> None:
        self.broker = broker
        self.rng = rng
        self.store: dict[bytes, bytes] = {}
        self.committed: dict[Position, int] = defaultdict(int)
        self.landed: dict[Position, int] = defaultdict(int)
        self.position: dict[Position, int] = defaultdict(int)
        self.in_flight: list[Batch] = []
        self.timers = Timers(SLOT_MS)
        #: After a crash, the hand-off records in the log are read before the other
        #: inputs of their partition (leadscore/stream/faust_ext/consumer.py, 10).
        self.handoffs_first = handoffs_first
        self.catch_up: dict[Position, int] = {}

    def read(self, _partition: int, key: bytes) -> bytes | LeadRecord | None:
        for batch in reversed(self.in_flight):
            if key in batch.effects.writes:
                return batch.effects.writes[key][1]
        return self.store.get(key)

    def waiting(self) -> list[Position]:
        ready = [p for p, log in self.broker.logs.items() if self.position[p] < len(log)]
        if not self.handoffs_first:
            return ready
        behind = {p for (t, p), end in self.catch_up.items() if self.position[(t, p)] < end}
        return [(t, p) for t, p in ready if t == "handoff" or p not in behind]

    def step(self) -> bool:
        """Take up to 4 records from one or two positions as one batch; False if none wait."""
        ready = self.waiting()
        if not ready:
            return False
        taken: list[Input] = []
        ends: dict[Position, int] = {}
        for where in self.rng.sample(ready, min(len(ready), self.rng.choice([1, 1, 2]))):
            topic, partition = where
            log = self.broker.logs[where]
            start = self.position[where]
            end = min(len(log), start + self.rng.randint(1, 4))
            for offset in range(start, end):
                record = log[offset]
                taken.append(
                    Input(
                        topic,
                        partition,
                        offset,
                        record.key,
                        record.value,
                        NOW,
                        handoff=topic == "handoff",
                        privacy=topic == "privacy",
                        headers=record.headers,
                    )
                )
            self.position[where] = ends[where] = end
        effects = process(taken, self.read, self.timers, RULES, NOW, LIMITS_WITH_KEY, ENCODERS)
        self.broker.send(effects)
        self.in_flight.append(Batch(effects, ends))
        if len(self.in_flight) > DEPTH:
            self.land()
        return True

    def land(self) -> None:
        """The oldest batch's changelog records delivered: into the store, records done."""
        batch = self.in_flight.pop(0)
        for key, (_partition, record) in batch.effects.writes.items():
            if record is None:
                self.store.pop(key, None)
            else:
                self.store[key] = encode_lead(record)
        self.landed.update(batch.ends)

    def commit(self) -> None:
        for where in self.rng.sample(list(self.landed), len(self.landed)):
            if self.rng.random() < 0.7:
                self.committed[where] = self.landed[where]

    def crash(self) -> None:
        """SIGKILL: what was in flight is gone; read again from the committed offsets."""
        self.in_flight.clear()
        self.landed = defaultdict(int, self.committed)
        self.position = defaultdict(int, self.committed)
        self.timers = Timers(SLOT_MS)
        self.catch_up = {
            where: len(log) for where, log in self.broker.logs.items() if where[0] == "handoff"
        }

    def drain(self) -> None:
        while self.step():
            pass
        while self.in_flight:
            self.land()
        self.commit()

    def lead(self, contact: str) -> LeadRecord | None:
        raw = self.store.get(contact.encode())
        return None if raw is None else decode_lead(raw, contact.encode())


@dataclass
class Person:
    known: str
    others: list[str]  # anonymous ids and a duplicate known id
    account: str  # every event of every id of the person carries it
    events: dict[str, tuple[str, int]] = field(default_factory=dict)  # id -> (type, at)

    @property
    def ids(self) -> list[str]:
        return [self.known, *self.others]


def workload(rng: random.Random, people: int, events: int) -> tuple[list[Person], list[Record]]:
    """Events on every id of every person, an identify or merge for each other id at a
    random point, some records produced twice; each record with its event's key."""
    crowd = [
        Person(
            f"k{i}",
            [f"v{i}-{j}" for j in range(rng.randrange(3))]
            + ([f"d{i}"] if rng.random() < 0.3 else []),
            f"org-{i % 2}",
        )
        for i in range(people)
    ]
    plan: list[tuple[Person, str, str, str | None]] = []
    for _ in range(events):
        person = rng.choice(crowd)
        plan.append((person, rng.choice(person.ids), rng.choice(KINDS), None))
    for person in crowd:
        for other in person.others:
            kind = "merge" if other.startswith("d") else "identify"
            plan.insert(rng.randrange(len(plan) + 1), (person, person.known, kind, other))
    records = []
    for n, (person, contact, kind, other) in enumerate(plan):
        at = T0 + n * 1000
        body: dict[str, object] = {
            "event_id": f"e{n}",
            "contact_id": contact,
            "type": kind,
            "occurred_at": at,
            "account_id": person.account,
        }
        if kind == "identify":
            body["anonymous_id"] = other
        elif kind == "merge":
            body["properties"] = {"from": other}
        person.events[f"e{n}"] = (kind, at)
        records.append(Record(contact.encode(), orjson.dumps(body)))
        if rng.random() < 0.05:
            records.append(rng.choice(records))
    return crowd, records


def reference(person: Person) -> LeadRecord | None:
    record: LeadRecord | None = None
    for event_id, (kind, at) in sorted(person.events.items(), key=lambda item: item[1][1]):
        event = EngagementEvent(
            event_id=event_id, contact_id=person.known, type=kind, occurred_at=at
        )
        record = apply_event(record, event, RULES, NOW).record
    return record


def partition_of(rng: random.Random, key: bytes) -> int:
    """The key's partition, or (a third of the time) another: a random partitioner."""
    return key_partition(key, PARTITIONS) if rng.random() < 0.67 else rng.randrange(PARTITIONS)


def run(
    seed: int, crashes: int, erase: bool, handoffs_first: bool = True
) -> tuple[Worker, Broker, list[Person], set[str]]:
    """The workload produced while the worker runs and crashes ``crashes`` times; then,
    with ``erase``, erase requests for some of the people, with up to 3 more crashes."""
    rng = random.Random(seed)
    crowd, records = workload(rng, people=4, events=rng.randint(5, 30))
    broker = Broker()
    worker = Worker(broker, rng, handoffs_first)
    crash_at = sorted(rng.randrange(1, 60) for _ in range(crashes))
    moves = 0
    pending = list(records)
    while pending or worker.waiting():
        moves += 1
        if pending and rng.random() < 0.5:
            record = pending.pop(0)
            broker.append("events", partition_of(rng, record.key), record)
        elif rng.random() < 0.15:
            worker.commit()
        elif worker.in_flight and rng.random() < 0.3:
            worker.land()
        else:
            worker.step()
        while crash_at and crash_at[0] <= moves:
            crash_at.pop(0)
            worker.crash()
    worker.drain()
    erased: set[str] = set()
    if erase:
        doomed = rng.sample(crowd, rng.randint(1, len(crowd)))
        for n, person in enumerate(doomed):
            contact = rng.choice(person.ids)
            request = EraseRequest(f"r{n}", contact, NOW)
            broker.append(
                "privacy",
                partition_of(rng, contact.encode()),
                Record(contact.encode(), request.to_bytes()),
            )
            erased.add(person.known)
        for _ in range(rng.randint(0, 3)):
            for _ in range(rng.randint(1, 10)):
                worker.step() if rng.random() < 0.8 else worker.commit()
            worker.crash()
        worker.drain()
    return worker, broker, crowd, erased


def check(worker: Worker, broker: Broker, crowd: list[Person], erased: set[str]) -> None:
    def last_state(contact: str) -> bytes | None:
        states = broker.lead_state.get(contact.encode())
        return states[-1] if states else None

    for person in crowd:
        gone = person.known in erased
        for contact in person.ids:
            if contact == person.known and not gone:
                continue
            lead = worker.lead(contact)
            assert lead is None or lead.alias_of is not None, f"{contact} holds a lead"
            assert last_state(contact) is None, f"{contact}'s last lead-state is a lead"
        if gone:
            continue
        lead = worker.lead(person.known)
        want = reference(person)
        if want is None:  # no event on any of its ids
            assert lead is None
            assert last_state(person.known) is None
            continue
        assert lead is not None, f"{person.known} holds no lead"
        assert lead.alias_of is None, f"{person.known} is merged into {lead.alias_of}"
        assert lead.event_count == want.event_count, f"{person.known}: event count"
        assert math.isclose(
            score_at(lead, RULES, NOW), score_at(want, RULES, NOW), rel_tol=1e-9, abs_tol=1e-9
        ), f"{person.known}: score"
        assert last_state(person.known) is not None
    check_accounts(broker, crowd, erased)


def check_accounts(broker: Broker, crowd: list[Person], erased: set[str]) -> None:
    """The account agent over the account updates as the crashing lead worker sent them
    (replays included, each partition in log order): each account is the sum of its
    kept people's scores, and holds a record of those people's known ids only."""
    table: dict[bytes, bytes] = {}
    timers = Timers(SLOT_MS)
    state, action = encoder("AccountState", "json"), encoder("AccountAction", "json")
    for (topic, partition), log in sorted(broker.logs.items()):
        if topic != "account-updates":
            continue
        records = [Input(topic, partition, n, r.key, r.value, NOW) for n, r in enumerate(log)]
        effects = process_accounts(
            records, lambda _p, k: table.get(k), timers, RULES, NOW, state, action
        )
        assert not effects.dead_letters
        for key, (_, value) in effects.writes.items():
            if value is None:
                table.pop(key, None)
            else:
                table[key] = encode_entry(value)
    for account in sorted({p.account for p in crowd}):
        kept = [
            (p, want)
            for p in crowd
            if p.account == account and p.known not in erased and (want := reference(p))
        ]
        raw = table.get(account_key(account))
        got = decode_account(raw).engagement.at(NOW, RULES) if raw else 0.0
        total = sum(score_at(want, RULES, NOW) for _, want in kept)
        assert math.isclose(got, total, rel_tol=1e-9, abs_tol=1e-6), f"{account}: {got} != {total}"
        members = {k for k in table if k.startswith(member_key(account, ""))}
        assert members == {member_key(account, p.known) for p, _ in kept}, account


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 4))
def test_merges_through_crashes_end_in_one_lead_per_person(seed: int, crashes: int) -> None:
    check(*run(seed, crashes, erase=False))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 2))
def test_erasures_through_crashes_leave_nothing_of_the_erased(seed: int, crashes: int) -> None:
    check(*run(seed, crashes, erase=True))


def test_without_reading_hand_offs_first_a_replay_loses_events() -> None:
    """Why the consumer reads hand-off records first after an assignment: without it,
    one crash in the model is enough to lose an anonymous id's event (or leave its
    lead-state standing) in some runs."""
    failed = 0
    for seed in range(200):
        try:
            check(*run(seed, crashes=1, erase=False, handoffs_first=False))
        except AssertionError:
            failed += 1
    assert failed > 0
