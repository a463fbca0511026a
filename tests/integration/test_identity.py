"""Identify and merge on a real broker (issue 22): the example of docs/identity.md,
run as it is written, and a merge of two known contacts."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from leadscore.codecs.events import decode_event
from leadscore.scoring import LeadRecord, Rules, apply_event, load_rules
from leadscore.scoring.merge import merge_id
from leadscore.stream.partitioning import key_partition
from tests.integration.test_pipeline import T0, ev
from tests.support.deadlines import RECORDS_S
from tests.support.deployments import Deployment
from tests.support.http import Answer, free_port, get, wait_until
from tests.support.records import consume, produce, read_all

ROOT = Path(__file__).resolve().parents[2]
RULES = load_rules(None)


def example_events() -> list[bytes]:
    """The JSON lines docs/identity.md has users produce."""
    text = (ROOT / "docs" / "identity.md").read_text()
    block = re.search(r"cat > /tmp/identify.jsonl <<'EOF'\n(.*?)\nEOF\n", text, re.S)
    assert block, "docs/identity.md shows the events to produce"
    return [line.encode() for line in block.group(1).splitlines()]


def core_score(lines: list[bytes], contact: str, rules: Rules = RULES) -> float:
    """The pure core's score of these events, all as one contact's."""
    record: LeadRecord | None = None
    for line in lines:
        body = orjson.loads(line)
        body["contact_id"] = contact
        event = decode_event(contact.encode(), orjson.dumps(body), 1 << 20)
        record = apply_event(record, event, rules, event.occurred_at).record
    assert record is not None
    return record.score


def api_worker(start_worker: Any) -> int:
    """A worker serving the API; its port."""
    port = free_port()
    start_worker(LEADSCORE_WEB_ENABLED="true", LEADSCORE_WEB_PORT=str(port))
    return port


def send(deployment: Deployment, records: list[tuple[bytes, bytes]]) -> None:
    produce(deployment.bootstrap, deployment.topic("events"), records)


def lead(port: int, contact: str, events: int) -> Answer | None:
    answer = get(port, f"/leads/{contact}")
    return answer if answer.status == 200 and answer.body["event_count"] == events else None


def test_the_identify_example_joins_anonymous_visits_to_the_known_lead(
    deployment: Deployment, start_worker, tmp_path: Path
) -> None:
    visitor, dana = "visitor-8c1f", "dana@example.com"
    parts = deployment.partitions
    assert key_partition(visitor.encode(), parts) != key_partition(dana.encode(), parts)
    port = free_port()
    start_worker(LEADSCORE_WEB_ENABLED="true", LEADSCORE_WEB_PORT=str(port))
    lines = example_events()
    events = tmp_path / "identify.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    subprocess.run(
        [sys.executable, "-m", "leadscore.cli", "produce", str(events)],
        env={**os.environ, **deployment.env},
        check=True,
        capture_output=True,
    )

    answer = wait_until(lambda: lead(port, dana, 3), "dana's lead with all three events")
    assert math.isclose(answer.body["score"], core_score(lines, dana), abs_tol=1e-4)
    assert get(port, f"/leads/{visitor}").status == 404
    history = get(port, f"/leads/{dana}/history").body["changes"]
    assert [(c["event_type"], c["merged_from"]) for c in history][:1] == [("merge", visitor)]

    states = consume(deployment.bootstrap, deployment.topic("lead-state"), 5)
    tombstones = [m.key() for m in states if m.value() is None]
    assert tombstones == [visitor.encode()]

    # Later visits under the anonymous id are scored on dana.
    produce(
        deployment.bootstrap,
        deployment.topic("events"),
        [ev("v-3", visitor, "page_view", T0)],
    )
    wait_until(lambda: lead(port, dana, 4), "the later visit on dana's lead")
    assert get(port, f"/leads/{visitor}").status == 404


def test_a_merge_event_joins_two_known_contacts(deployment: Deployment, start_worker) -> None:
    survivor, duplicate = "dana@example.com", "d.smith@example.com"
    port = api_worker(start_worker)
    send(
        deployment,
        [
            ev("s-1", survivor, "signup", T0),
            ev("d-1", duplicate, "demo_request", T0 + 1_000),
            ev("d-2", duplicate, "download", T0 + 2_000),
        ],
    )
    wait_until(lambda: lead(port, duplicate, 2), "the duplicate's lead")
    produce(
        deployment.bootstrap,
        deployment.topic("events"),
        [ev("m-1", survivor, "merge", T0 + 3_000, properties={"from": duplicate})],
    )
    answer = wait_until(lambda: lead(port, survivor, 4), "the merged lead")
    # signup 20 + demo request 30 + download 10, two seconds of a 30-day half-life apart
    assert math.isclose(answer.body["score"], 60.0, abs_tol=1e-3)
    assert answer.body["stage"] == "qualified"
    assert get(port, f"/leads/{duplicate}").status == 404
    # Actions: survivor warm; duplicate warm, hot; the merged lead qualified and mql.
    actions = [orjson.loads(m.value()) for m in consume(
        deployment.bootstrap, deployment.topic("actions"), 5
    )]  # fmt: skip
    merge = merge_id(survivor, duplicate, "m-1")  # the merge's score change and its actions
    merged = [(a["kind"], a["name"]) for a in actions if a["cause_event_id"] == merge]
    assert sorted(merged) == [("stage_changed", "qualified"), ("threshold_crossed", "mql")]
    assert {a["contact_id"] for a in actions if a["cause_event_id"] == merge} == {survivor}


def test_consent_withdrawn_freezes_the_lead_and_granted_resumes_it(
    deployment: Deployment, start_worker
) -> None:
    port = api_worker(start_worker)
    send(
        deployment,
        [
            ev("c-1", "erin", "signup", T0),
            ev("c-2", "erin", "consent", T0 + 1_000, properties={"status": "withdrawn"}),
            ev("c-3", "erin", "demo_request", T0 + 2_000),  # frozen: not scored
        ],
    )
    frozen = wait_until(lambda: lead(port, "erin", 2), "erin's lead, frozen")
    assert frozen.body["consent"] == "withdrawn"
    assert frozen.body["score"] == 20.0
    (action,) = [orjson.loads(m.value()) for m in consume(
        deployment.bootstrap, deployment.topic("actions"), 2
    ) if orjson.loads(m.value())["kind"] == "consent_withdrawn"]  # fmt: skip
    assert (action["contact_id"], action["cause_event_id"]) == ("erin", "c-2")

    produce(
        deployment.bootstrap,
        deployment.topic("events"),
        [
            ev("c-4", "erin", "consent", T0 + 3_000, properties={"status": "granted"}),
            ev("c-5", "erin", "demo_request", T0 + 4_000),
        ],
    )
    resumed = wait_until(lambda: lead(port, "erin", 4), "erin's lead, resumed")
    assert resumed.body["consent"] == "granted"
    assert math.isclose(resumed.body["score"], 50.0, abs_tol=1e-3)
    frozen_count = 'leadscore_events_total{outcome="frozen"} 1.0'  # counted once its batch landed
    wait_until(lambda: frozen_count in get(port, "/metrics").body, frozen_count)


def keys_of(bootstrap: str, topic: str) -> list[bytes | None]:
    """The keys every record of a topic (read from its start to its end) has."""
    return [m.key() for m in read_all(bootstrap, topic)]


#: The log cleaner compacts as soon as it can: every segment rolls after 100 ms, any
#: dirt is worth cleaning, tombstones go at once.
COMPACT_NOW = {
    "segment.ms": "100",
    "min.cleanable.dirty.ratio": "0.0001",
    "delete.retention.ms": "0",
    "min.compaction.lag.ms": "0",
}


def test_an_erased_contact_is_gone_from_every_store_and_compacted_topic(
    deployment: Deployment, start_worker
) -> None:
    port = api_worker(start_worker)
    send(
        deployment,
        [
            ev("a-1", "visitor-8c1f", "page_view", T0),
            ev("e-1", "erin", "signup", T0 + 1_000),
            ev("e-2", "erin", "identify", T0 + 2_000, anonymous_id="visitor-8c1f"),
        ],
    )
    wait_until(lambda: lead(port, "erin", 3), "erin's lead with the visit merged")
    erase = subprocess.run(
        [sys.executable, "-m", "leadscore.cli", "erase", "erin", "--request-id", "req-7"],
        env={**os.environ, **deployment.env},
        check=True,
        capture_output=True,
        text=True,
    )
    assert erase.stdout.strip() == "req-7"

    (receipt,) = consume(deployment.bootstrap, deployment.topic("privacy-receipts"), 1)
    assert receipt.key() == b"req-7"
    assert b"erin" not in receipt.value()
    assert orjson.loads(receipt.value())["cleared"] == {"lead": True, "merged_ids": 1}
    assert get(port, "/leads/erin").status == 404
    assert get(port, "/leads/visitor-8c1f").status == 404
    erased = [orjson.loads(m.value()) for m in consume(
        deployment.bootstrap, deployment.topic("actions"), 2  # erin warm, then erased
    ) if orjson.loads(m.value())["kind"] == "erased"]  # fmt: skip
    assert [(a["contact_id"], a["cause_event_id"]) for a in erased] == [("erin", "req-7")]

    # Later events of both ids are dropped, not dead-lettered.
    produce(
        deployment.bootstrap,
        deployment.topic("events"),
        [ev("e-3", "erin", "demo_request", T0 + 3_000), ev("a-2", "visitor-8c1f", "page_view", T0)],
    )
    suppressed = 'leadscore_events_total{outcome="suppressed"} 2.0'
    wait_until(lambda: suppressed in get(port, "/metrics").body, suppressed)
    assert get(port, "/leads/erin").status == 404

    # Compacted topics: once the log cleaner has run, no record keyed by either id is left.
    settings = deployment.settings()
    compacted = [
        f"{settings.app_id}-leads-changelog",
        settings.lead_state_topic,
        settings.privacy_topic,
    ]
    deployment.alter_topics(compacted, COMPACT_NOW)
    ids = {b"erin", b"visitor-8c1f"}
    # Kafka never cleans the active segment: later writes on the same partitions roll it.
    wanted = {key_partition(i, deployment.partitions) for i in ids}
    neighbours = [
        c
        for c in (f"roll-{n}" for n in range(200))
        if key_partition(c.encode(), deployment.partitions) in wanted
    ][:10]
    rounds = iter(range(1_000))

    def cleaned() -> bool:
        n = next(rounds)
        time.sleep(0.2)  # past segment.ms since the last writes
        produce(
            deployment.bootstrap,
            deployment.topic("events"),
            [ev(f"{c}-{n}", c, "page_view", T0 + n) for c in neighbours],
        )
        produce(
            deployment.bootstrap, settings.privacy_topic, [(c.encode(), None) for c in neighbours]
        )
        return all(not ids & set(keys_of(deployment.bootstrap, t)) for t in compacted)

    wait_until(cleaned, "no record of erin or the visitor in the compacted topics", 240, pause=2)


def test_the_readme_identity_and_privacy_section_does_what_it_says(
    deployment: Deployment, start_worker
) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Identity and privacy", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "the README shows the commands"
    commands = [line.split("  #")[0].strip() for line in block.group(1).splitlines()]
    assert "LEADSCORE_RULES_FILE=examples/rules.yaml .venv/bin/leadscore worker &" in commands
    assert ".venv/bin/leadscore produce examples/identity.jsonl" in commands
    assert ".venv/bin/leadscore erase dana@example.com" in commands

    port = free_port()
    deployment.extra.update(
        LEADSCORE_WEB_ENABLED="true", LEADSCORE_RULES_FILE=str(ROOT / "examples/rules.yaml")
    )
    start_worker(LEADSCORE_WEB_PORT=str(port))
    env = {**os.environ, **deployment.env}

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "leadscore.cli", *args],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
            timeout=RECORDS_S,
        )
        return done.stdout

    cli("produce", "examples/identity.jsonl")
    dana = wait_until(lambda: lead(port, "dana@example.com", 6), "dana's lead with 6 events")
    assert dana.body["consent"] == "withdrawn"
    lines = (ROOT / "examples/identity.jsonl").read_bytes().splitlines()
    example = load_rules(ROOT / "examples/rules.yaml")
    scored = [line for line in lines if b'"signup"' not in line]  # frozen: not scored
    assert math.isclose(
        dana.body["score"], core_score(scored, "dana@example.com", example), abs_tol=1e-3
    )
    for merged in ("visitor-8c1f", "d.smith@example.com"):
        assert get(port, f"/leads/{merged}").status == 404

    request_id = cli("erase", "dana@example.com").strip()
    receipt = cli("tail", "privacy-receipts", "--from-beginning", "--max", "1")
    assert request_id in receipt
    assert "dana" not in receipt
    wait_until(lambda: get(port, "/leads/dana@example.com").status == 404, "dana erased")
