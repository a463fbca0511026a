"""End to end on a real broker: events in, scores, actions, DLQ and state out."""

from __future__ import annotations

import re
import shutil
import time
from typing import Any

import orjson
from confluent_kafka import Producer

from leadscore.codecs.avro import schema
from leadscore.codecs.read_back import decode_output
from leadscore.stream.partitioning import key_partition
from tests.support.brokers import client_config
from tests.support.deployments import Deployment
from tests.support.http import free_port, get, wait_until
from tests.support.records import consume, count_now, produce

T0 = int(time.time() * 1000) - 60_000


def ev(event_id: str, contact: str, kind: str, at: int, **extra: object) -> tuple[bytes, bytes]:
    body = {"event_id": event_id, "contact_id": contact, "type": kind, "occurred_at": at, **extra}
    return contact.encode(), orjson.dumps(body)


def values(records: list) -> list[dict]:
    return [decode_output(m.value()) for m in records]


def test_seed_sequence_gives_scores_stages_and_one_action_per_stage_change(
    deployment: Deployment, start_worker
) -> None:
    start_worker()
    produce(
        deployment.bootstrap,
        deployment.topic("events"),
        [
            ev("e1", "alice", "page_view", T0),
            ev("e2", "alice", "signup", T0 + 1_000),
            ev("e3", "alice", "demo_request", T0 + 2_000),
        ],
    )
    changes = values(consume(deployment.bootstrap, deployment.topic("score-changes"), 3))
    assert [c["new_score"] for c in changes] == [1.0, 21.0, 51.0]
    assert [[(r["rule_id"], r["points"], r["clipped"]) for r in c["reasons"]] for c in changes] == [
        [("page-view", 1.0, 0.0)],
        [("signup", 20.0, 0.0)],
        [("demo-request", 30.0, 0.0)],
    ]
    states = values(consume(deployment.bootstrap, deployment.topic("lead-state"), 3))
    assert [(s["score"], s["stage"]) for s in states] == [
        (1.0, "cold"),
        (21.0, "warm"),
        (51.0, "hot"),
    ]
    assert states[-1]["velocity"] == 3
    assert states[-1]["next_action"] == "sales_touch"
    actions = values(consume(deployment.bootstrap, deployment.topic("actions"), 2))
    assert [(a["kind"], a["name"], a["previous_stage"], a["cause_event_id"]) for a in actions] == [
        ("stage_changed", "warm", "cold", "e2"),
        ("stage_changed", "hot", "warm", "e3"),
    ]
    assert count_now(deployment.bootstrap, deployment.topic("actions")) == 2


def test_crossing_mql_emits_a_threshold_action_once(deployment: Deployment, start_worker) -> None:
    start_worker()
    produce(
        deployment.bootstrap,
        deployment.topic("events"),
        [
            ev("m1", "bob", "signup", T0),
            ev("m2", "bob", "demo_request", T0 + 1),
            ev("m3", "bob", "download", T0 + 2),
            ev("m4", "bob", "download", T0 + 3),
            ev("m3", "bob", "download", T0 + 2),  # a re-delivered duplicate
        ],
    )
    actions = values(consume(deployment.bootstrap, deployment.topic("actions"), 4))
    crossed = [a for a in actions if a["kind"] == "threshold_crossed"]
    assert [(a["name"], a["score"], a["cause_event_id"]) for a in crossed] == [("mql", 60.0, "m3")]
    assert [r["rule_id"] for r in crossed[0]["reasons"]] == ["demo-request", "signup", "download"]
    assert count_now(deployment.bootstrap, deployment.topic("score-changes")) == 4


def test_bad_records_are_dead_lettered_with_their_bytes_and_good_ones_scored(
    deployment: Deployment, start_worker
) -> None:
    start_worker()
    avro_good = schema("EngagementEvent").encode(
        {
            "event_id": "g2",
            "contact_id": "carol",
            "type": "signup",
            "occurred_at": T0 + 10,
            "account_id": "acme",
            "anonymous_id": None,
            "source": "crm",
            "properties": {},
        }
    )
    bad = [
        (b"carol", b"{not json", "bad_json"),
        (
            b"carol",
            orjson.dumps({"event_id": "x1", "type": "signup", "occurred_at": T0}),
            "schema_violation",
        ),
        (b"mallory", ev("x2", "carol", "signup", T0)[1], "key_mismatch"),
        (None, ev("x3", "carol", "signup", T0)[1], "key_missing"),
        (b"carol", b"\xc3\x01" + b"\x00" * 8 + b"garbage", "unknown_schema"),
        (b"carol", avro_good[:14], "bad_avro"),
    ]
    produce(
        deployment.bootstrap,
        deployment.topic("events"),
        [
            *[(k, v) for k, v, _ in bad],
            ev("g1", "carol", "page_view", T0),
            (b"carol", avro_good),
        ],
    )
    dead = consume(deployment.bootstrap, deployment.topic("dlq"), len(bad))
    by_reason = {dict(m.headers())["leadscore.error.reason"].decode(): m for m in dead}
    assert set(by_reason) == {reason for _, _, reason in bad}
    for key, value, reason in bad:
        record = by_reason[reason]
        assert record.value() == value
        assert record.key() == key
        headers = dict(record.headers())
        assert headers["leadscore.source.topic"].decode() == deployment.topic("events")
        assert int(headers["leadscore.source.offset"]) >= 0
        assert headers["leadscore.error.message"]
    changes = values(consume(deployment.bootstrap, deployment.topic("score-changes"), 2))
    assert [(c["event_id"], c["new_score"]) for c in changes] == [("g1", 1.0), ("g2", 21.0)]


def test_records_that_once_stopped_the_worker_are_dead_lettered_and_it_keeps_going(
    deployment: Deployment, start_worker, tmp_path
) -> None:
    """Issue 19: each of these stopped the worker (or froze a lead) before; now each is
    dead-lettered with its reason, and the good events around them are scored."""
    traits = [f"t{i}" for i in range(12)]
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "version: poison\n"
        "rules: [{id: signup, event_type: signup, points: 20}]\n"
        "stages: [{name: cold, min_score: 0}, {name: warm, min_score: 11}]\n"
        "fit:\n  event_types: [identify]\n  rules:\n"
        + "".join(
            f"    - {{id: f{t}, when: [{{property: {t}, exists: true}}], points: 1}}\n"
            for t in traits
        )
        + "  grades: [{name: D, min_fit: 0}]\n"
    )
    worker = start_worker(LEADSCORE_RULES_FILE=str(rules), LEADSCORE_MAX_OUTPUT_BYTES="10000")
    year_ahead = int(time.time() * 1000) + 365 * 86_400_000
    poison = [
        (*ev("p1", "dave", "signup", T0, account_id="a" * 300_000), "too_large"),
        (*ev("p2", "dave", "signup", T0, account_id="a" * 5_000), "schema_violation"),
        (*ev("p3", "dave\x1b[2J", "signup", T0), "schema_violation"),
        (*ev("p4", "dave\u202e", "signup", T0), "schema_violation"),
        (*ev("p5", "dave", "signup", year_ahead), "from_future"),
        (
            *ev("p6", "dave", "identify", T0, properties={t: "v" * 1000 for t in traits}),
            "output_too_large",
        ),
    ]
    produce(
        deployment.bootstrap,
        deployment.topic("events"),
        [*[(k, v) for k, v, _ in poison], ev("g1", "dave", "signup", T0 + 1)],
    )
    dead = consume(deployment.bootstrap, deployment.topic("dlq"), len(poison))
    got = sorted((dict(m.headers())["leadscore.error.reason"].decode(), m.value()) for m in dead)
    assert got == sorted((reason, value) for _, value, reason in poison)
    changes = values(consume(deployment.bootstrap, deployment.topic("score-changes"), 1))
    assert [(c["event_id"], c["new_score"]) for c in changes] == [("g1", 20.0)]
    assert worker.proc is not None
    assert worker.proc.poll() is None, "the worker stopped"


def test_restart_keeps_every_leads_state(deployment: Deployment, start_worker) -> None:
    worker = start_worker()
    events = deployment.topic("events")
    leads = [f"lead-{i}" for i in range(12)]
    produce(deployment.bootstrap, events, [ev(f"{c}-a", c, "signup", T0) for c in leads])
    consume(deployment.bootstrap, deployment.topic("score-changes"), len(leads))
    assert worker.stop() == 0

    start_worker()
    produce(
        deployment.bootstrap,
        events,
        [
            *[ev(f"{c}-a", c, "signup", T0) for c in leads],  # replayed: must change nothing
            *[ev(f"{c}-b", c, "demo_request", T0 + 1_000) for c in leads],
        ],
    )
    changes = values(
        consume(deployment.bootstrap, deployment.topic("score-changes"), 2 * len(leads))
    )
    after = {c["contact_id"]: c["new_score"] for c in changes if c["event_id"].endswith("-b")}
    assert after == dict.fromkeys(leads, 50.0)
    assert count_now(deployment.bootstrap, deployment.topic("score-changes")) == 2 * len(leads)


def test_wiped_rocksdb_is_rebuilt_from_the_changelog(deployment: Deployment, start_worker) -> None:
    worker = start_worker()
    events = deployment.topic("events")
    produce(
        deployment.bootstrap,
        events,
        [ev("w1", "dave", "page_view", T0), ev("w2", "dave", "signup", T0 + 1)],
    )
    consume(deployment.bootstrap, deployment.topic("score-changes"), 2)
    assert worker.stop() == 0
    state_dir = deployment.root / "state"
    assert any(state_dir.rglob("*.db")), "expected RocksDB stores under the data dir"
    shutil.rmtree(state_dir)

    rebuilt = start_worker()
    # Read by the bulk loader (faust_ext.recovery), not record by record by Faust.
    # (one record per batch that touched dave: 1 or 2, as the events were batched)
    assert re.search(r"changelog loaded in bulk: [12] record\(s\)", rebuilt.log())
    produce(
        deployment.bootstrap,
        events,
        [ev("w2", "dave", "signup", T0 + 1), ev("w3", "dave", "demo_request", T0 + 2)],
    )
    changes = values(consume(deployment.bootstrap, deployment.topic("score-changes"), 3))
    assert [(c["event_id"], c["new_score"]) for c in changes] == [
        ("w1", 1.0),
        ("w2", 21.0),
        ("w3", 51.0),
    ]
    assert count_now(deployment.bootstrap, deployment.topic("score-changes")) == 3


def test_state_left_from_another_cluster_is_cleared_and_rebuilt(
    deployment: Deployment, start_worker
) -> None:
    """A state dir claimed by another cluster (e.g. a broker that was reset) is not trusted."""
    worker = start_worker()
    events = deployment.topic("events")
    produce(deployment.bootstrap, events, [ev("o1", "erin", "signup", T0)])
    consume(deployment.bootstrap, deployment.topic("score-changes"), 1)
    assert worker.stop() == 0
    owner = deployment.root / "state" / "OWNER.json"
    claimed = orjson.loads(owner.read_bytes())
    owner.write_bytes(orjson.dumps({**claimed, "cluster_id": "some-other-cluster"}))

    restarted = start_worker()
    assert "clearing it, tables are rebuilt from the changelog" in restarted.log()
    produce(
        deployment.bootstrap,
        events,
        [ev("o1", "erin", "signup", T0), ev("o2", "erin", "download", T0 + 1)],
    )
    changes = values(consume(deployment.bootstrap, deployment.topic("score-changes"), 2))
    assert [(c["event_id"], c["new_score"]) for c in changes] == [("o1", 20.0), ("o2", 30.0)]
    assert orjson.loads(owner.read_bytes()) == claimed


def test_events_off_their_murmur2_partition_are_scored_counted_and_reported(
    deployment: Deployment, start_worker
) -> None:
    """A producer left at librdkafka's default partitioner (crc32) puts some contacts
    on other partitions than Faust's murmur2 routing expects."""
    port = free_port()
    worker = start_worker(LEADSCORE_WEB_ENABLED="true", LEADSCORE_WEB_PORT=str(port))
    contacts = [f"crc-{n}@example.com" for n in range(24)]
    landed: dict[str, int] = {}
    producer = Producer(client_config(deployment.bootstrap, partitioner="consistent"))

    def delivered(err: object, message: Any) -> None:
        landed[message.key().decode()] = -1 if err else message.partition()

    for n, contact in enumerate(contacts):
        key, value = ev(f"crc{n}", contact, "page_view", T0)
        producer.produce(deployment.topic("events"), key=key, value=value, on_delivery=delivered)
    assert producer.flush(30) == 0
    off = [c for c in contacts if landed[c] != key_partition(c.encode(), deployment.partitions)]
    assert 0 < len(off) < len(contacts), landed  # crc32 and murmur2 agree on some keys only
    changes = values(consume(deployment.bootstrap, deployment.topic("score-changes"), 24))
    assert {c["contact_id"] for c in changes} == set(contacts)  # all scored all the same
    # The metric is counted once a batch's outputs are acknowledged, a moment after
    # a reader may have seen them.
    counted = f"leadscore_events_off_partition_total {float(len(off))}"
    wait_until(lambda: counted in get(port, "/metrics").body, counted)
    log = worker.log()
    assert "events keyed to another partition than the one they arrived on" in log
    assert "@example.com" not in log  # counts per partition, no contact ids
