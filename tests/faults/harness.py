"""The fault tier's workload, its reference and the end-state comparison.

A seeded workload (leadscore's traffic model, plus re-delivered duplicates and
unreadable records) is produced at a steady rate while a scenario injects its
faults. The reference is the pure scoring core folded over the same records in
each contact's order, which is the order Kafka keeps them in. At the end the
published topics are read (read_committed) and compared with it.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition
from rocksdict import AccessType, Rdict

import leadscore
from leadscore.codecs.events import decode_event
from leadscore.config import Settings
from leadscore.errors import InvalidEvent
from leadscore.scoring import Rules, apply_event, load_rules, snapshot
from leadscore.scoring.records import LeadAction, LeadRecord
from leadscore.simulate import TrafficModel
from leadscore.verify import Report, Topic, check, read_topic
from tests.support.brokers import LIBRDKAFKA_LOG, client_config, retrying
from tests.support.deadlines import COMMIT_DEADLINE_S, PRODUCER_DEADLINE_S
from tests.support.deployments import Deployment
from tests.support.processes import Process
from tests.support.records import read_all

COMPARED = ("score", "stage", "event_count", "last_event_at", "fit", "disqualified")
# What events alone decide: a decay timer (which the reference does not run) can move
# a lead's stage, and with it the thresholds its later events cross.
EVENT_DRIVEN = ("event_count", "last_event_at", "fit", "disqualified")


@dataclass
class Workload:
    """Records in produce order, and what the scoring core makes of them."""

    records: list[tuple[bytes, bytes]]
    duplicates: int
    unreadable: int
    leads: dict[str, LeadRecord] = field(default_factory=dict)
    actions: dict[str, LeadAction] = field(default_factory=dict)
    scored: set[str] = field(default_factory=set)
    #: Per lead, (event id, score after it) for each event scored, in order.
    trails: dict[str, list[tuple[str, float]]] = field(default_factory=dict)


def workload(seed: int, events: int, contacts: int, rules: Rules) -> Workload:
    """``events`` records over the last few minutes of event time: about 2% are
    re-deliveries of an earlier record and 0.5% are unreadable."""
    model = TrafficModel(contacts, seed=seed, prefix=f"f{seed}-", seeded_ids=True, hot_share=0.05)
    rng = random.Random(seed)
    start = int(time.time() * 1000) - events * 20
    records: list[tuple[bytes, bytes]] = []
    duplicates = unreadable = 0
    for i in range(events):
        roll = rng.random()
        if roll < 0.02 and records:
            records.append(rng.choice(records))
            duplicates += 1
        elif roll < 0.025:
            contact = model.pick_contact().contact_id.encode()
            records.append((contact, b'{"event_id": "broken", "contact_id": '))
            unreadable += 1
        else:
            event = model.next_event(start + i * 20)
            records.append((event["contact_id"].encode(), orjson.dumps(event)))
    return fold(Workload(records, duplicates, unreadable), rules)


def fold(made: Workload, rules: Rules, skip: frozenset[int] = frozenset()) -> Workload:
    """Fill in the reference: the scoring core over ``made.records`` in order, with the
    worker's default input limits, leaving out the records at the offsets in ``skip``."""
    limits = Settings()
    made.unreadable = 0  # re-delivered copies of unreadable records are dead-lettered too
    for i, (key, value) in enumerate(made.records):
        if i in skip:
            continue
        try:
            event = decode_event(key, value, limits.max_event_bytes, limits.max_properties_bytes)
        except InvalidEvent:
            made.unreadable += 1
            continue
        applied = apply_event(made.leads.get(event.contact_id), event, rules, 0)
        if applied.status != "scored":
            continue
        made.leads[event.contact_id] = applied.record
        made.scored.add(event.event_id)
        made.trails.setdefault(event.contact_id, []).append((event.event_id, applied.record.score))
        for action in applied.actions:
            made.actions[action.action_id] = action
    return made


# Regex conditions of the hostile workload's rules: this one backtracks for hours on
# Python's re against the bomb below, and runs in linear time on RE2.
BOMB_RULE = r"^([a-z0-9]+\.?)+@corp\.com$"
BOMB = "a" * 60_000 + "!"
BIG_TRAITS = 60  # x 1,000 characters: a lead record over the scenario output limit


def hostile_rules(rules_file: Path) -> Rules:
    """The default rules, a regex rule that backtracks and fit rules naming many traits."""
    text = (Path(leadscore.__file__).parent / "rules" / "default.yaml").read_text()
    text = text.replace('version: "default-1"', 'version: "hostile-1"')
    text = text.replace(
        "rules:\n",
        "rules:\n  - {id: corp-signup, event_type: signup, points: 5, "
        f"when: [{{property: email, regex: '{BOMB_RULE}'}}]}}\n",
        1,
    )
    text += "fit:\n  event_types: [identify]\n  rules:\n" + "".join(
        f"    - {{id: t{i}, when: [{{property: t{i}, exists: true}}], points: 0}}\n"
        for i in range(BIG_TRAITS)
    )
    rules_file.write_text(text)
    return load_rules(rules_file)


@dataclass
class Hostile:
    """A workload with poison records at random positions and what each must become."""

    made: Workload
    poison: Counter[str]  # DLQ reason -> records
    bombs: int


def hostile_workload(seed: int, events: int, contacts: int, rules: Rules) -> Hostile:
    """``workload`` plus, about every 80th record, one poison record of each kind in turn
    (each a record that stopped a worker or froze a lead before issue 19) and a good
    signup whose email is a regex bomb (scored as the core says, in linear time)."""
    base = workload(seed, events, contacts, rules)
    rng = random.Random(seed + 1)
    now = int(time.time() * 1000)
    year = 365 * 86_400_000
    records = list(base.records)
    goods = [key.decode() for key, value in base.records if value.startswith(b'{"event_id"')]

    def event(contact: str, kind: str, at: int, n: int, **extra: object) -> tuple[bytes, bytes]:
        body = {"event_id": f"h{seed}-{n}", "contact_id": contact, "type": kind,
                "occurred_at": at, **extra}  # fmt: skip
        return contact.encode("utf-8", "surrogatepass"), orjson.dumps(body)

    def poison(n: int, k: int) -> tuple[tuple[bytes, bytes], str]:
        contact = rng.choice(goods)
        kinds = [
            (event(contact, "signup", now, n, account_id="a" * 300_000), "too_large"),
            (event(contact, "signup", now, n, source="s" * 5_000), "schema_violation"),
            (event(f"{contact}\x1b[2J", "signup", now, n), "schema_violation"),
            (event(f"{contact}\u202e", "signup", now, n), "schema_violation"),
            (event(contact, "demo_request", now + year, n), "from_future"),
            (
                event(f"big-{seed}-{n}", "identify", now, n,
                      properties={f"t{i}": "v" * 1000 for i in range(BIG_TRAITS)}),
                "output_too_large",
            ),
        ]  # fmt: skip
        return kinds[k % len(kinds)]

    poisoned: dict[int, str] = {}
    out: list[tuple[bytes, bytes]] = []
    bombs = 0
    for i, record in enumerate(records):
        out.append(record)
        if i % 80 == 40:
            (made_record, reason) = poison(i, len(poisoned))
            poisoned[len(out)] = reason
            out.append(made_record)
        elif i % 80 == 0 and i:
            out.append(
                event(rng.choice(goods), "signup", now - 1000, i, properties={"email": BOMB})
            )
            bombs += 1
    made = fold(Workload(out, base.duplicates, 0), rules, skip=frozenset(poisoned))
    return Hostile(made, Counter(poisoned.values()), bombs)


def dead_letter_reasons(deployment: Deployment, topic: str) -> Counter[str]:
    """Distinct source records in a dead-letter topic, counted by reason."""
    reasons = {}
    for message in read_all(deployment.bootstrap, topic):
        headers = dict(message.headers() or [])
        source = (
            headers.get("leadscore.source.partition"),
            headers.get("leadscore.source.offset"),
        )
        reasons[source] = headers["leadscore.error.reason"].decode()
    return Counter(reasons.values())


class PacedProducer(threading.Thread):
    """Produces the records at ``rate`` per second in the background, through broker
    outages too (librdkafka keeps them queued and retries).

    The last ``reserve`` records wait for ``release()``: events still flow when a
    scenario's faults take longer than the paced part (a slow machine), and none
    are left for after them otherwise.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        records: list[tuple[bytes, bytes]],
        rate: float,
        reserve: int = 0,
    ):
        super().__init__(daemon=True)
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "logger": LIBRDKAFKA_LOG,
                "enable.idempotence": True,
                # as docs/topics.md asks of producers: Kafka's (and Faust's) key partitioner
                "partitioner": "murmur2_random",
                "linger.ms": 5,
                "message.timeout.ms": 300_000,
            }
        )
        self.topic, self.records, self.rate = topic, records, rate
        self.sent = 0
        self.failed: list[str] = []
        self.held = len(records) - reserve
        self.released = threading.Event()
        if not reserve:
            self.released.set()

    def release(self) -> None:
        """Let the reserved records go (at the same rate, counted from now)."""
        self.released.set()

    def run(self) -> None:
        started = time.monotonic()
        for key, value in self.records:
            if self.sent == self.held and not self.released.is_set():
                self.released.wait()
                started = time.monotonic() - self.sent / self.rate
            lag = started + self.sent / self.rate - time.monotonic()
            if lag > 0:
                time.sleep(lag)
            self.producer.produce(self.topic, key=key, value=value, on_delivery=self._delivered)
            self.producer.poll(0)
            self.sent += 1
        left = self.producer.flush(300)
        if left:
            self.failed.append(f"{left} record(s) not delivered")

    def _delivered(self, error: Any, _message: Any) -> None:
        if error is not None:
            self.failed.append(str(error))

    def finish(self, timeout: float = PRODUCER_DEADLINE_S) -> None:
        self.release()
        self.join(timeout)
        assert not self.is_alive(), "the producer did not finish"
        assert not self.failed, f"events not delivered: {self.failed[:3]}"


def commit_positions(
    deployment: Deployment, kinds: Sequence[str] = ("events",)
) -> dict[tuple[str, int], tuple[int, int]]:
    """The worker group's committed offset and the end offset, per partition of the
    input topics of these kinds (``events``, ``handoff``, ``privacy``)."""
    settings = deployment.settings()
    consumer = Consumer(client_config(deployment.bootstrap, **{"group.id": settings.app_id}))
    try:
        positions = {}
        for kind in kinds:
            topic = deployment.topic(kind)
            parts = retrying(
                lambda topic=topic: (
                    consumer.list_topics(topic, timeout=10).topics[topic].partitions
                ),
            )
            committed = retrying(
                lambda topic=topic, parts=parts: consumer.committed(
                    [TopicPartition(topic, p) for p in parts], timeout=10
                ),
            )
            for tp in committed:
                _, high = retrying(
                    lambda tp=tp, topic=topic: consumer.get_watermark_offsets(
                        TopicPartition(topic, tp.partition), timeout=10
                    ),
                )
                positions[(topic, tp.partition)] = (max(tp.offset, 0), high)
        return positions
    finally:
        consumer.close()


def wait_committed(
    deployment: Deployment,
    workers: Sequence[Process],
    timeout: float = COMMIT_DEADLINE_S,
    kinds: Sequence[str] = ("events", "account-updates"),
) -> None:
    """Until the group's committed offsets reach the end of the input topics of these
    kinds (all of them at once: hand-off records a step sends are inputs too).

    Fails at once if a worker exits. On a timeout each worker is sent SIGUSR1, on
    which mode's Worker writes every thread's and task's stack to its log, so the
    failure shows where the worker was waiting.
    """
    deadline = time.monotonic() + timeout
    positions: dict[tuple[str, int], tuple[int, int]] = {}
    while time.monotonic() < deadline:
        positions = commit_positions(deployment, kinds)
        behind = {tp: c for tp, (c, end) in positions.items() if c < end}
        if not behind or not records_from(deployment, behind):
            return
        for worker in workers:
            if not worker.running():
                raise AssertionError(
                    f"a worker exited while events were still uncommitted: {worker.log()[-3000:]}"
                )
        time.sleep(1.0)
    for worker in workers:
        worker.dump_stacks()
    raise AssertionError(
        f"events still uncommitted after {timeout} s, (committed, end) per partition: "
        f"{positions}; task stacks in {[str(w.log_path) for w in workers]}"
    )


def records_from(deployment: Deployment, starts: dict[tuple[str, int], int]) -> bool:
    """Whether any of these partitions holds a committed record at or after its offset.

    A topic written in transactions (the hand-off topic under exactly_once) ends in
    transaction markers, and an aborted transaction leaves records a read_committed
    consumer never sees: a committed offset below the end offset can be the end."""
    consumer = Consumer(
        client_config(
            deployment.bootstrap,
            **{
                "group.id": "faults-records-from",
                "enable.partition.eof": True,
                "isolation.level": "read_committed",
            },
        )
    )
    try:
        consumer.assign([TopicPartition(t, p, offset) for (t, p), offset in starts.items()])
        pending = set(starts)
        deadline = time.monotonic() + 30
        while pending and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error() is None:
                return True
            pending.discard((message.topic(), message.partition()))
        return bool(pending)  # not read to the end: count it as not caught up
    finally:
        consumer.close()


@dataclass
class Outcome:
    """One scenario's figures, printed in the session summary."""

    scenario: str
    guarantee: str
    events_in: int
    duplicates_in: int
    unreadable_in: int
    faults: int
    leads_checked: int = 0
    mismatches: int = 0
    actions_expected: int = 0
    actions_lost: int = 0
    actions_unexpected: int = 0
    action_duplicates: int = 0
    changes_missing: int = 0
    change_duplicates: int = 0
    dead_letters: int = 0
    timer_actions: int = 0
    timer_leads: int = 0
    accounts_checked: int = 0
    account_mismatches: int = 0
    verify: Report | None = None
    examples: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        found = []
        for name in (
            "mismatches",
            "actions_lost",
            "actions_unexpected",
            "changes_missing",
            "account_mismatches",
        ):
            if getattr(self, name):
                found.append(f"{name}={getattr(self, name)}")
        if self.dead_letters != self.unreadable_in:
            found.append(f"dead_letters={self.dead_letters} (expected {self.unreadable_in})")
        if self.verify is not None and not self.verify.ok:
            found.append(f"verify: {self.verify.counts()}")
        return found


def compare(deployment: Deployment, made: Workload, rules: Rules, outcome: Outcome) -> Outcome:
    """Read the published topics and fill ``outcome`` against the reference."""
    settings = deployment.settings()
    lead_state = read_topic(settings, settings.lead_state_topic)
    changes = read_topic(settings, settings.score_changes_topic)
    actions = read_topic(settings, settings.actions_topic)
    dlq = dead_lettered_sources(deployment, settings.dlq_topic)
    outcome.verify = check(
        lead_state, changes, actions, rules, settings.processing_guarantee == "exactly_once"
    )

    got_actions = _ids(actions, "action_id")
    first = _first(actions, "action_id")
    # Decay timers re-assess leads at processing time, with no cause event. For a
    # lead a timer moved, only what events alone decide is compared, and its
    # actions are left out of "lost" and "unexpected".
    ticked = {a["contact_id"] for a in first.values() if a["cause_event_id"] is None}
    outcome.timer_actions = sum(1 for a in first.values() if a["cause_event_id"] is None)
    outcome.timer_leads = len(ticked)

    outcome.leads_checked = len(made.leads)
    for contact, record in made.leads.items():
        states = lead_state.by_key.get(contact)
        expected = snapshot(record, rules, 0).to_dict()
        fields = EVENT_DRIVEN if contact in ticked else COMPARED
        if not states or any(states[-1][k] != expected[k] for k in fields):
            outcome.mismatches += 1
            if len(outcome.examples) < 3:
                got = {k: states[-1][k] for k in fields} if states else None
                want = {k: expected[k] for k in fields}
                outcome.examples.append(f"{contact}: got {got}, want {want}")
    outcome.mismatches += len(set(lead_state.by_key) - set(made.leads))

    caused = {
        i
        for i, a in first.items()
        if a["cause_event_id"] is not None and a["contact_id"] not in ticked
    }
    expected_actions = {i for i, a in made.actions.items() if a.contact_id not in ticked}
    outcome.actions_expected = len(made.actions)
    lost = sorted(expected_actions - set(got_actions))
    outcome.actions_lost = len(lost)
    outcome.examples.extend(
        f"lost action {made.actions[i].kind} {made.actions[i].name} for "
        f"{made.actions[i].contact_id}, caused by event {made.actions[i].cause_event_id}"
        for i in lost[:3]
    )
    outcome.examples.extend(
        trail_difference(contact, changes, made)
        for contact in sorted({made.actions[i].contact_id for i in lost})[:3]
    )
    unexpected = caused - expected_actions
    outcome.actions_unexpected = len(unexpected)
    outcome.examples.extend(
        f"unexpected action {first[i]['kind']} {first[i]['name']} for {first[i]['contact_id']}"
        for i in sorted(unexpected)[:3]
    )
    outcome.action_duplicates = sum(n - 1 for n in got_actions.values())

    got_changes = _ids(changes, "event_id")
    missing = made.scored - set(got_changes)
    outcome.changes_missing = len(missing)
    outcome.examples.extend(f"score change missing for event {e}" for e in sorted(missing)[:3])
    outcome.change_duplicates = sum(n - 1 for n in got_changes.values())
    outcome.dead_letters = dlq
    outcome.accounts_checked, wrong = account_problems(deployment, list(made.leads.values()), rules)
    outcome.account_mismatches = len(wrong)
    outcome.examples.extend(wrong[:3])
    return outcome


def account_problems(
    deployment: Deployment, leads: list[LeadRecord], rules: Rules
) -> tuple[int, list[str]]:
    """Each account's last published state against the sum of its contacts' reference
    scores (engagement at the state's latest event time) and their count: how many
    accounts were checked, and what was wrong."""
    settings = deployment.settings()
    states = read_topic(settings, settings.account_state_topic)
    members: dict[str, list[LeadRecord]] = {}
    for record in leads:
        if record.account_id is not None and record.event_count and record.alias_of is None:
            members.setdefault(record.account_id, []).append(record)
    problems = []
    for account, records in sorted(members.items()):
        published = states.by_key.get(account)
        last = published[-1] if published else None
        if last is None:
            problems.append(f"account {account}: no state, want {len(records)} contacts")
            continue
        at = last["last_event_at"]
        want = sum(r.score * rules.decay_factor(at - r.ref_ms) for r in records)
        if last["contacts"] != len(records) or abs(last["score"] - want) > 1e-3 * max(
            1.0, abs(want)
        ):
            problems.append(
                f"account {account}: engagement {last['score']} of {last['contacts']} "
                f"contacts, want {round(want, 4)} of {len(records)}"
            )
    for account in sorted(set(states.by_key) - set(members)):
        last = states.by_key[account][-1]
        if last["contacts"]:
            problems.append(f"account {account}: {last['contacts']} contacts, want none")
    return len(members), problems


def trail_difference(contact: str, changes: Topic, made: Workload) -> str:
    """Where a lead's published score changes first depart from the reference:
    the order its events were applied in, or the score one of them gave."""
    got: dict[str, float] = {}
    for change in changes.by_key.get(contact, []):
        got.setdefault(change["event_id"], change["new_score"])
    want = made.trails.get(contact, [])
    order = list(got)
    for i, (event_id, score) in enumerate(want):
        if i >= len(order) or order[i] != event_id:
            return (
                f"  {contact}: event {i} of {len(want)} applied out of order: got "
                f"{[e[:8] for e in order[i : i + 4]]}, want {[e[:8] for e, _ in want[i : i + 4]]}"
            )
        if abs(got[event_id] - score) > 1e-3:
            return (
                f"  {contact}: event {i} of {len(want)} ({event_id[:8]}) in order, "
                f"score after it {got[event_id]}, want {score}"
            )
    return f"  {contact}: all {len(want)} events applied in order with the reference's scores"


def _ids(topic: Topic, name: str) -> Counter[str]:
    return Counter(r[name] for records in topic.by_key.values() for r in records)


def _first(topic: Topic, name: str) -> dict[str, dict[str, Any]]:
    first: dict[str, dict[str, Any]] = {}
    for records in topic.by_key.values():
        for r in records:
            first.setdefault(r[name], r)
    return first


def dead_lettered_sources(deployment: Deployment, topic: str) -> int:
    """Distinct source records in a dead-letter topic (by their source partition and offset)."""
    return sum(dead_letter_reasons(deployment, topic).values())


def describe(outcome: Outcome) -> list[str]:
    return [
        f"{outcome.scenario} [{outcome.guarantee}]",
        str(outcome.faults),
        f"{outcome.events_in:,}",
        f"{outcome.leads_checked:,}",
        str(outcome.mismatches),
        f"{outcome.accounts_checked:,} / {outcome.account_mismatches}",
        f"{outcome.actions_expected:,}",
        str(outcome.actions_lost),
        str(outcome.action_duplicates),
        str(outcome.change_duplicates),
        "ok" if outcome.verify is not None and outcome.verify.ok else "FAILED",
    ]


HEADERS = [
    "scenario",
    "faults",
    "events in",
    "leads checked",
    "mismatches",
    "accounts checked / wrong",
    "actions expected",
    "actions lost",
    "duplicate actions",
    "duplicate changes",
    "verify",
]


def table_contents(state_dir: Path) -> dict[str, dict[bytes, bytes]]:
    """Every RocksDB store under a stopped worker's state dir: store name -> its items."""
    contents = {}
    for db in sorted(state_dir.rglob("*.db")):
        store = Rdict(str(db), access_type=AccessType.read_only())
        try:
            contents[db.name] = {bytes(k): bytes(v) for k, v in store.items()}
        finally:
            store.close()
    return contents
