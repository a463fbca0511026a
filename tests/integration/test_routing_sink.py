"""`leadscore sink routing` on a real broker: strategies hold, and re-processing repeats itself."""

from __future__ import annotations

import shutil
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
import yaml

from tests.integration.test_pipeline import values
from tests.support.deployments import Deployment
from tests.support.records import consume, count_now, produce

ROUTING = {
    "actions": ["threshold_crossed:mql"],
    "teams": [
        {
            "name": "enterprise",
            "members": [{"id": "ann", "capacity_per_day": 5}, {"id": "ben", "capacity_per_day": 5}],
            "overflow_queue": "enterprise-queue",
        },
        {
            "name": "smb",
            "members": [{"id": "sam"}, {"id": "sue"}, {"id": "sid"}],
            "overflow_queue": "q",
        },
    ],
    "rules": [
        {"team": "enterprise", "when": [{"property": "company_size", "gte": 1000}]},
        {"team": "smb"},
    ],
}
NOW = int(time.time() * 1000)


def action(i: int, kind: str = "threshold_crossed") -> dict[str, Any]:
    big = i % 3 == 0
    return {
        "action_id": f"act-{i:04d}",
        "contact_id": f"contact-{i}",
        "account_id": f"acct-{i % 7}" if i % 2 == 0 else None,
        "kind": kind,
        "name": "mql" if kind == "threshold_crossed" else "hot",
        "score": 65.0,
        "previous_score": 50.0,
        "stage": "qualified",
        "previous_stage": "hot",
        "occurred_at": NOW,
        "emitted_at": NOW,
        "cause_event_id": None,
        "reasons": [],
        "rules_version": "v",
        "fit": 0.0,
        "grade": None,
        "fit_reasons": [],
        "traits": {"company_size": "5000" if big else "20"},
    }


def send(deployment: Deployment, actions: list[dict[str, Any]]) -> None:
    produce(
        deployment.bootstrap,
        deployment.topic("actions"),
        [(a["contact_id"].encode(), orjson.dumps(a)) for a in actions],
    )


def check_strategies(assignments: list[dict[str, Any]], routed: list[dict[str, Any]]) -> None:
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in assignments:
        by_id[a["assignment_id"]].append(a)
    assert set(by_id) == {a["action_id"] for a in routed}, "one assignment per routed action"
    for records in by_id.values():
        assert all(r == records[0] for r in records), "a repeated assignment is identical"
    unique = [records[0] for records in by_id.values()]
    owners_of_account: dict[str, set[str]] = defaultdict(set)
    for a in unique:
        if a["account_id"]:
            owners_of_account[a["account_id"]].add(a["owner"])
    assert all(len(o) == 1 for o in owners_of_account.values()), "accounts keep their owner"
    turns: dict[str, int] = defaultdict(int)
    for a in unique:
        if a["strategy"] == "round_robin":
            turns[a["owner"]] += 1
    assert turns["ann"] <= 5, "capacity 5 a day"
    assert turns["ben"] <= 5, "capacity 5 a day"
    assert {a["strategy"] for a in unique} == {"round_robin", "sticky_account", "overflow"}
    for a in unique:
        if a["team"] == "enterprise":
            assert a["owner"] in ("ann", "ben", "enterprise-queue")
    assert {a["team"] for a in unique} == {"enterprise", "smb"}


def test_assignments_follow_the_strategies_and_survive_kill_and_state_loss(
    deployment: Deployment, tmp_path: Path
) -> None:
    config = tmp_path / "routing.yaml"
    config.write_text(yaml.safe_dump(ROUTING))
    routed = [action(i) for i in range(60)]
    others = [action(i, "stage_changed") for i in range(60, 80)]

    sink = deployment.routing_sink(config).start()
    send(deployment, routed[:30] + others)
    first = values(consume(deployment.bootstrap, deployment.topic("assignments"), 30))
    sink.kill()  # SIGKILL: whatever was not committed is consumed again
    sink = deployment.routing_sink(config).start()
    send(deployment, routed[30:])
    consume(deployment.bootstrap, deployment.topic("assignments"), 60)
    sink.stop()

    # Lose the state; the same actions arrive again (a replay): the rebuilt state answers
    # them exactly as before.
    shutil.rmtree(tmp_path / "sink-data" / "routing")
    sink = deployment.routing_sink(config).start()
    assert "rebuilt from" in sink.log()
    send(deployment, routed)
    # Every routed action ends with at least two records: its first assignment and the
    # replay's. A SIGKILL can add repeats, so read the whole topic until that holds.
    topic = deployment.topic("assignments")
    deadline = time.monotonic() + 60
    while True:
        everything = values(
            consume(deployment.bootstrap, topic, count_now(deployment.bootstrap, topic, 1.0))
        )
        per_id = Counter(a["assignment_id"] for a in everything)
        if all(per_id[a["action_id"]] >= 2 for a in routed):
            break
        assert time.monotonic() < deadline, f"{len(everything)} records: {per_id}"
    sink.stop()

    check_strategies(everything, routed)
    before = {a["assignment_id"]: a for a in first}
    for a in everything:
        if a["assignment_id"] in before:
            assert a == before[a["assignment_id"]]
    print(f"assignments: {len(everything)} records for {len(routed)} routed actions")
