"""The fault tier's identity workload: people with anonymous ids and duplicate
contacts, merged by identify and merge events while workers are killed, then some
of them erased; and the end state each person must reach.

Each person has a known contact id, up to three anonymous ids (a tracker's visitor
ids: events before and after their identify) and sometimes a duplicate known id
(merged by a merge event). Whatever order the partitions take their records in,
a person's activity must end in one lead, on the known id, with the pure core's
score over every event of all its ids; every other id of the person holds no
lead; an erased person holds none at all.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field

import orjson

from leadscore.codecs.read_back import decode_output
from leadscore.scoring import EngagementEvent, LeadRecord, Rules, apply_event
from leadscore.step.privacy import EraseRequest
from leadscore.verify import Report, check, read_topic
from tests.faults.harness import account_problems
from tests.support.deployments import Deployment
from tests.support.records import read_all

KINDS = ["page_view", "page_view", "email_open", "download", "signup", "demo_request"]


@dataclass
class Person:
    known: str
    anonymous: list[str]
    duplicate: str | None
    account: str  # every event of every id of the person carries it
    events: dict[str, EngagementEvent] = field(default_factory=dict)  # by event id

    @property
    def ids(self) -> list[str]:
        return [self.known, *self.anonymous, *([self.duplicate] if self.duplicate else [])]


@dataclass
class Identities:
    people: list[Person]
    records: list[tuple[bytes, bytes]]  # in produce order, re-deliveries included
    duplicates: int


def identity_workload(seed: int, people: int, events: int) -> Identities:
    """``events`` engagement events over the people's ids, an identify for each
    anonymous id and a merge for each duplicate at random points, and about 2% of
    the records delivered twice."""
    rng = random.Random(seed)
    crowd = []
    for i in range(people):
        anonymous = [f"v{seed}-{i}-{j}" for j in range(rng.randrange(4))]
        duplicate = f"d{seed}-{i}@example.com" if rng.random() < 0.15 else None
        account = f"org{seed}-{i % 12}"
        crowd.append(Person(f"k{seed}-{i}@example.com", anonymous, duplicate, account))
    start = int(time.time() * 1000) - events * 20
    bodies: list[dict[str, object]] = []
    for _ in range(events):
        person = rng.choice(crowd)
        contact = rng.choice(person.ids)
        bodies.append({"contact_id": contact, "type": rng.choice(KINDS), "person": person})
    for person in crowd:  # the joins, each at a random point of the stream
        for anonymous in person.anonymous:
            at = rng.randrange(len(bodies) + 1)
            join = {"contact_id": person.known, "type": "identify", "anonymous_id": anonymous}
            bodies.insert(at, {**join, "person": person})
        if person.duplicate:
            at = rng.randrange(len(bodies) + 1)
            join = {"contact_id": person.known, "type": "merge", "from": person.duplicate}
            bodies.insert(at, {**join, "person": person})
    records: list[tuple[bytes, bytes]] = []
    duplicates = 0
    for n, body in enumerate(bodies):
        person = body.pop("person")
        assert isinstance(person, Person)
        event: dict[str, object] = {
            "event_id": f"i{seed}-{n}",
            "occurred_at": start + n * 20,
            "account_id": person.account,
            **{k: v for k, v in body.items() if k != "from"},
        }
        if "from" in body:
            event["properties"] = {"from": body["from"]}
        parsed = EngagementEvent.model_validate(event)
        person.events[parsed.event_id] = parsed
        records.append((parsed.contact_id.encode(), orjson.dumps(event)))
        if rng.random() < 0.02:
            records.append(rng.choice(records))
            duplicates += 1
    return Identities(crowd, records, duplicates)


def later_events(made: Identities, seed: int, count: int) -> list[tuple[bytes, bytes]]:
    """Events after the erasures, on random ids of random people (scored on a kept
    person's lead, dropped for an erased one)."""
    rng = random.Random(seed)
    now = int(time.time() * 1000)
    records = []
    for n in range(count):
        person = rng.choice(made.people)
        contact = rng.choice(person.ids)
        event = {
            "event_id": f"late{seed}-{n}",
            "contact_id": contact,
            "type": rng.choice(KINDS),
            "occurred_at": now - 1_000 + n,
            "account_id": person.account,
        }
        person.events[str(event["event_id"])] = EngagementEvent.model_validate(event)
        records.append((contact.encode(), orjson.dumps(event)))
    return records


def erase_requests(people: list[Person], seed: int) -> list[tuple[bytes, bytes]]:
    """One request per person, by their known id or, for some, by one of their other ids
    (which erases the lead it was merged into)."""
    rng = random.Random(seed)
    records = []
    for n, person in enumerate(people):
        contact = rng.choice(person.ids)
        request = EraseRequest(f"r{seed}-{n}", contact, int(time.time() * 1000))
        records.append((contact.encode(), request.to_bytes()))
    return records


def reference(person: Person, rules: Rules) -> LeadRecord:
    """The pure core over every event of the person, as the known id's."""
    record: LeadRecord | None = None
    for event in sorted(person.events.values(), key=lambda e: e.occurred_at):
        as_known = event.model_copy(update={"contact_id": person.known})
        record = apply_event(record, as_known, rules, event.occurred_at).record
    assert record is not None
    return record


@dataclass
class IdentityOutcome:
    people: int
    erased: int
    mismatches: list[str] = field(default_factory=list)
    accounts: int = 0
    verify: Report | None = None
    timeline: list[str] = field(default_factory=list)  # of the first person found wrong


def timeline(deployment: Deployment, person: Person, erased: bool) -> list[str]:
    """What the topics hold for one person's ids, topic by topic in log order: their
    events, the hand-off and privacy records sent to them, their lead-state records.
    Printed with a mismatch, so a failure in CI shows what happened to the person."""
    ids = {i.encode() for i in person.ids}
    settings = deployment.settings()
    lines = [f"person {person.known} ids {person.ids}{' (erased)' if erased else ''}"]
    for topic in (
        settings.events_topic,
        settings.privacy_topic,
        settings.handoff_topic,
        settings.lead_state_topic,
    ):
        lines.append(f"{topic}:")
        for message in read_all(deployment.bootstrap, topic):
            if message.key() not in ids:
                continue
            value = message.value()
            headers = dict(message.headers() or [])
            if value is None:
                what = "tombstone"
            elif topic == settings.lead_state_topic:
                state = decode_output(value)
                what = f"events={state['event_count']} score={state['score']}"
            elif topic == settings.handoff_topic:
                kind = headers.get("leadscore.handoff", b"?").decode()
                what = f"{kind} from {headers.get('leadscore.handoff.from', b'').decode()}"
                if kind == "event":
                    what += f" {orjson.loads(value).get('event_id')}"
            elif topic == settings.events_topic:
                event = orjson.loads(value)
                what = f"{event.get('type')} {event.get('event_id')}"
            else:
                what = "erase request"
            where = f"[{message.partition()}]@{message.offset()}"
            lines.append(f"  {where} {message.key().decode()}: {what}")
    return lines


def compare_identities(
    deployment: Deployment, made: Identities, erased: set[str], rules: Rules
) -> IdentityOutcome:
    """The lead-state topic's last record of every id against what each person must
    reach; ``leadscore verify``'s invariants over the published topics."""
    settings = deployment.settings()
    lead_state = read_topic(settings, settings.lead_state_topic)
    changes = read_topic(settings, settings.score_changes_topic)
    actions = read_topic(settings, settings.actions_topic)
    outcome = IdentityOutcome(len(made.people), len(erased))
    outcome.verify = check(
        lead_state, changes, actions, rules, settings.processing_guarantee == "exactly_once"
    )

    def last(contact: str) -> dict[str, object] | None:
        states = lead_state.by_key.get(contact)
        return states[-1] if states else None

    for person in made.people:
        gone = person.known in erased
        for contact in person.ids:
            if contact == person.known and not gone:
                continue
            if last(contact) is not None:
                outcome.mismatches.append(f"{contact}: a lead, want none")
                if not outcome.timeline:
                    outcome.timeline = timeline(deployment, person, gone)
        if gone:
            continue
        state = last(person.known)
        want = reference(person, rules)
        if state is None:
            outcome.mismatches.append(f"{person.known}: no lead, want {want.event_count} events")
        elif state["event_count"] != want.event_count or not math.isclose(
            float(state["score"]),
            want.score,
            abs_tol=1e-3,  # type: ignore[arg-type]
        ):
            outcome.mismatches.append(
                f"{person.known}: {state['event_count']} events, score {state['score']}; "
                f"want {want.event_count}, {round(want.score, 4)}"
            )
    # Accounts: the kept people's scores, summed; anonymous and merged ids and erased
    # people bring nothing.
    kept = [reference(p, rules) for p in made.people if p.known not in erased]
    outcome.accounts, wrong = account_problems(deployment, kept, rules)
    outcome.mismatches.extend(wrong)
    return outcome
