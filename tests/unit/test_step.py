"""The worker's step as a function: batches in, effects out (leadscore.step.batch)."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from leadscore.codecs.leads import decode_lead, encode_lead
from leadscore.codecs.outputs import encoder
from leadscore.config import Settings
from leadscore.scoring import LeadRecord, load_rules
from leadscore.scoring.rules import MS_PER_DAY, MS_PER_HOUR
from leadscore.step.batch import Effects, Encoders, Input, Limits, Read, process
from leadscore.step.wheel import Timers
from leadscore.stream.partitioning import key_partition

RULES = load_rules()
NOW = 1_763_888_400_000
PARTITIONS = 4
SLOT_MS = 10_000
TYPES = ["page_view", "email_open", "download", "signup", "demo_request", "webinar_attended"]
CONTACTS = ["ada", "bob", "cy", "dee", "eve"]

_settings = Settings()
LIMITS = Limits(
    max_event_bytes=_settings.max_event_bytes,
    max_properties_bytes=_settings.max_properties_bytes,
    max_output_bytes=_settings.max_output_bytes,
    max_ahead_ms=300_000,
    partitions=PARTITIONS,
)
ENCODERS = Encoders(
    action=encoder("LeadAction", "json"),
    change=encoder("ScoreChange", "json"),
    state=encoder("LeadState", "json"),
    topic_names={
        "actions": "actions",
        "score_changes": "changes",
        "lead_state": "state",
        "dlq": "dlq",
        "handoff": "handoff",
        "privacy": "privacy",
        "receipts": "receipts",
        "leads": "leads-changelog",
    },
)


def event_record(offset: int, contact: str, kind: str, at: int, **extra: Any) -> Input:
    body = {"event_id": f"e-{offset}", "contact_id": contact, "type": kind, "occurred_at": at}
    body.update(extra)
    key = contact.encode()
    return Input("events", key_partition(key, PARTITIONS), offset, key, orjson.dumps(body), at)


def tick_record(offset: int, partition: int) -> Input:
    return Input("ticks", partition, offset, None, b"", None, tick=True)


def run(
    batches: list[list[Input]], now: int = NOW, pipelined: bool = False
) -> tuple[dict[bytes, bytes], Timers, Effects]:
    """Process ``batches`` in turn, applying each one's writes as the worker does.

    ``pipelined``: as the at_least_once worker does, a batch's writes are made only
    after the next batch was processed, which reads them from the batch's records.
    """
    leads: dict[bytes, bytes] = {}
    timers = Timers(SLOT_MS)
    every = Effects()
    in_flight: Effects | None = None
    for batch in batches:
        read = reader(leads)
        if pipelined and in_flight is not None:
            read = overlay(in_flight, read)
        effects = process(batch, read, timers, RULES, now, LIMITS, ENCODERS)
        if pipelined:
            if in_flight is not None:
                leads.update(written(in_flight))
            in_flight = effects
        else:
            leads.update(written(effects))
        every.outputs += effects.outputs
        every.scored += effects.scored
        every.duplicates += effects.duplicates
        every.dead_letters += effects.dead_letters
        every.actions += effects.actions
    if in_flight is not None:
        leads.update(written(in_flight))
    return leads, timers, every


def overlay(in_flight: Effects, read: Read) -> Read:
    def read_through(partition: int, key: bytes) -> bytes | LeadRecord | None:
        hit = in_flight.writes.get(key)
        return hit[1] if hit is not None else read(partition, key)

    return read_through


def reader(leads: dict[bytes, bytes]) -> Read:
    return lambda _partition, key: leads.get(key)


def written(effects: Effects) -> dict[bytes, bytes]:
    """The batch's lead writes, encoded (these batches erase nothing)."""
    assert all(record is not None for _partition, record in effects.writes.values())
    return {
        key: encode_lead(record)
        for key, (_partition, record) in effects.writes.items()
        if record is not None
    }


def split(records: list[Input], cuts: list[int]) -> list[list[Input]]:
    bounds = [0, *sorted({c % (len(records) + 1) for c in cuts}), len(records)]
    return [records[a:b] for a, b in itertools.pairwise(bounds) if a < b]


# Records of a few contacts over up to two days before NOW, with repeated event ids
# (duplicates), a future-dated event or two, undecodable records and ticks between.
records = st.lists(
    st.one_of(
        st.tuples(
            st.just("event"),
            st.sampled_from(CONTACTS),
            st.sampled_from(TYPES),
            st.integers(min_value=-2 * MS_PER_DAY, max_value=MS_PER_HOUR),
        ),
        st.tuples(st.just("tick"), st.integers(0, PARTITIONS - 1)),
        st.tuples(st.just("junk"), st.sampled_from(CONTACTS)),
        st.tuples(st.just("again"), st.integers(0, 40)),
    ),
    min_size=1,
    max_size=40,
)


def build(spec: list[tuple[Any, ...]]) -> list[Input]:
    built: list[Input] = []
    for offset, item in enumerate(spec):
        if item[0] == "event":
            _, contact, kind, delta = item
            built.append(event_record(offset, contact, kind, NOW + delta))
        elif item[0] == "tick":
            built.append(tick_record(offset, item[1]))
        elif item[0] == "junk":
            key = item[1].encode()
            built.append(Input("events", 0, offset, key, b"{not json", None))
        elif built:  # a record delivered again (at-least-once): same id, new offset
            again = built[item[1] % len(built)]
            built.append(
                Input(
                    again.topic,
                    again.partition,
                    offset,
                    again.key,
                    again.value,
                    again.timestamp_ms,
                    tick=again.tick,
                )
            )
    return built


@settings(max_examples=150, deadline=None)
@given(records, st.lists(st.integers(min_value=0, max_value=40), max_size=8))
def test_any_split_into_batches_gives_the_same_outputs_and_state(spec, cuts) -> None:
    inputs = build(spec)
    one_leads, one_timers, one = run([[r] for r in inputs])
    leads, timers, split_run = run(split(inputs, cuts))
    assert leads == one_leads
    assert split_run.outputs == one.outputs
    assert (split_run.duplicates, split_run.dead_letters, split_run.actions) == (
        one.duplicates,
        one.dead_letters,
        one.actions,
    )
    assert {p: w.slots for p, w in timers.wheels.items() if w.slots} == {
        p: w.slots for p, w in one_timers.wheels.items() if w.slots
    }
    assert {p: +c for p, c in timers.stages.items()} == {
        p: +c for p, c in one_timers.stages.items()
    }

    # The at_least_once worker scores a batch while the previous one is in flight.
    piped_leads, piped_timers, piped = run(split(inputs, cuts), pipelined=True)
    assert piped_leads == one_leads
    assert piped.outputs == one.outputs
    assert {p: w.slots for p, w in piped_timers.wheels.items() if w.slots} == {
        p: w.slots for p, w in one_timers.wheels.items() if w.slots
    }


def test_a_batch_writes_each_touched_lead_once_and_sends_every_event_s_outputs() -> None:
    batch = [
        event_record(0, "ada", "signup", NOW - 3000),
        event_record(1, "ada", "demo_request", NOW - 2000),
        event_record(2, "bob", "page_view", NOW - 1000),
        event_record(3, "ada", "download", NOW - 500),
    ]
    effects = process(batch, reader({}), Timers(SLOT_MS), RULES, NOW, LIMITS, ENCODERS)
    assert list(effects.writes) == [b"ada", b"bob"]
    homes = [key_partition(b"ada", PARTITIONS), key_partition(b"bob", PARTITIONS)]
    assert [p for p, _ in effects.writes.values()] == homes
    sources = {(o.key, o.source) for o in effects.outputs}
    assert sources == {(b"ada", homes[0]), (b"bob", homes[1])}, "each output names its record"
    assert decode_lead(written(effects)[b"ada"], b"ada").event_count == 3
    kinds = [(o.destination, o.key) for o in effects.outputs if o.destination != "actions"]
    assert kinds == [
        ("score_changes", b"ada"),
        ("lead_state", b"ada"),
        ("score_changes", b"ada"),
        ("lead_state", b"ada"),
        ("score_changes", b"bob"),
        ("lead_state", b"bob"),
        ("score_changes", b"ada"),
        ("lead_state", b"ada"),
    ]
    crossed = [orjson.loads(o.value or b"") for o in effects.outputs if o.destination == "actions"]
    assert ("threshold_crossed", "mql") in {(a["kind"], a["name"]) for a in crossed}
    state = orjson.loads(effects.outputs[-1].value or b"")
    assert state["event_count"] == 3


def test_a_record_that_cannot_be_scored_is_dead_lettered_with_its_reason_and_the_rest_go_on() -> (
    None
):
    future = event_record(1, "ada", "page_view", NOW + 3_600_000)
    batch = [
        Input("events", 2, 0, b"ada", b"{not json", 1),
        future,
        event_record(2, "ada", "page_view", NOW),
    ]
    effects = process(batch, reader({}), Timers(SLOT_MS), RULES, NOW, LIMITS, ENCODERS)
    dead = [o for o in effects.outputs if o.destination == "dlq"]
    assert [dict(o.headers)["leadscore.error.reason"] for o in dead] == [
        b"bad_json",
        b"from_future",
    ]
    assert dead[1].value == future.value
    assert dict(dead[1].headers)["leadscore.source.offset"] == b"1"
    assert sum(effects.dead_letters.values()) == 2
    assert decode_lead(written(effects)[b"ada"], b"ada").event_count == 1


def test_a_tick_re_assesses_due_leads_once_their_score_has_decayed() -> None:
    leads: dict[bytes, bytes] = {}
    timers = Timers(MS_PER_HOUR)  # a tick walks at most 10,000 slots
    warm = process(
        [event_record(0, "ada", "signup", NOW)], reader(leads), timers, RULES, NOW, LIMITS, ENCODERS
    )
    leads.update(written(warm))
    record = decode_lead(leads[b"ada"], b"ada")
    assert record.stage == "warm"
    assert record.due_ms is not None
    later = record.due_ms + MS_PER_HOUR
    partition = key_partition(b"ada", PARTITIONS)
    ticked = process(
        [tick_record(1, partition)], reader(leads), timers, RULES, later, LIMITS, ENCODERS
    )
    assert decode_lead(written(ticked)[b"ada"], b"ada").stage == "cold"
    assert [
        orjson.loads(o.value or b"")["kind"] for o in ticked.outputs if o.destination == "actions"
    ] == ["stage_changed"]
    assert timers.stages[partition]["cold"] == 1
    assert timers.stages[partition]["warm"] == 0
