"""`leadscore sink notify` against a real broker and a real local HTTP server."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import orjson
import yaml
from confluent_kafka import Consumer, TopicPartition

from leadscore.sinks.signing import signature_is_valid
from tests.support.brokers import client_config
from tests.support.deployments import Deployment
from tests.support.http import free_port, get, wait_until
from tests.support.records import consume, produce
from tests.webhook_server import Behaviour, WebhookServer, summary

SECRET = "whsec-test-1"


def action(i: int, kind: str = "threshold_crossed", name: str = "mql") -> dict[str, Any]:
    contact = f"contact-{i % 50}"
    return {
        "action_id": f"act-{i:05d}",
        "contact_id": contact,
        "account_id": None,
        "kind": kind,
        "name": name,
        "score": 61.0 + i % 7,
        "previous_score": 55.0,
        "stage": "qualified",
        "previous_stage": "hot",
        "occurred_at": int(time.time() * 1000),
        "emitted_at": int(time.time() * 1000),
        "cause_event_id": f"ev-{i}",
        "reasons": [{"rule_id": "demo-request", "points": 30.0, "clipped": 0.0, "cap_id": None}],
        "rules_version": "default-1",
        "fit": 0.0,
        "grade": None,
        "fit_reasons": [],
    }


def account_action(i: int) -> dict[str, Any]:
    return {
        "action_id": f"org-{i}:account_threshold_crossed:account_surge:0",
        "account_id": f"org-{i}",
        "kind": "account_threshold_crossed",
        "name": "account_surge",
        "score": 160.0,
        "previous_score": 140.0,
        "stage": "surging",
        "previous_stage": "engaged",
        "occurred_at": int(time.time() * 1000),
        "emitted_at": int(time.time() * 1000),
        "top_contacts": [{"contact_id": f"cto-{i}", "score": 50.0}],
        "rules_version": "default-1",
    }


def send_actions(deployment: Deployment, actions: list[dict[str, Any]]) -> None:
    produce(
        deployment.bootstrap,
        deployment.topic("actions"),
        [(a["contact_id"].encode(), orjson.dumps(a)) for a in actions],
    )


def endpoints_file(root: Path, server: WebhookServer, endpoints: list[dict[str, Any]]) -> Path:
    for e in endpoints:
        e.setdefault("kind", "webhook")
        if e["kind"] == "webhook":
            e.setdefault("secret_env", "TEST_WEBHOOK_SECRET")
        e["url"] = f"http://127.0.0.1:{server.port}{e.pop('path')}"
    path = root / "notify.yaml"
    path.write_text(
        yaml.safe_dump(
            {"link_template": "https://crm.example/leads/{contact_id}", "endpoints": endpoints}
        )
    )
    return path


def committed(deployment: Deployment) -> int:
    """Offsets the notify group has committed, summed over the actions partitions."""
    consumer = Consumer(
        client_config(deployment.bootstrap, **{"group.id": f"leadscore-{deployment.name}-notify"})
    )
    try:
        parts = [
            TopicPartition(deployment.topic("actions"), p) for p in range(deployment.partitions)
        ]
        return sum(max(tp.offset, 0) for tp in consumer.committed(parts, timeout=10))
    finally:
        consumer.close()


def wait_committed(deployment: Deployment, count: int) -> None:
    wait_until(lambda: committed(deployment) >= count, f"{count} actions committed")


def test_every_action_reaches_healthy_endpoints_once(deployment: Deployment, tmp_path) -> None:
    server = WebhookServer(free_port()).start()
    server.behave("/slack", Behaviour())
    server.behave("/hook", Behaviour())
    server.behave("/accounts", Behaviour())
    config = endpoints_file(
        tmp_path,
        server,
        [
            {
                "name": "sales-slack",
                "kind": "slack",
                "path": "/slack",
                "actions": ["threshold_crossed:*"],
            },
            {"name": "crm-hook", "path": "/hook", "actions": ["*"]},
            {"name": "abm-hook", "path": "/accounts", "actions": ["account_*"]},
        ],
    )
    # A small in-flight limit: the sink pauses and resumes its partitions all along.
    sink = deployment.notify_sink(
        config, TEST_WEBHOOK_SECRET=SECRET, LEADSCORE_SINK_MAX_IN_FLIGHT="10"
    ).start()
    try:
        actions = [action(i) for i in range(120)] + [
            action(i, "stage_changed", "hot") for i in range(120, 180)
        ]
        send_actions(deployment, actions)
        surges = [account_action(i) for i in range(5)]
        produce(
            deployment.bootstrap,
            deployment.topic("account-actions"),
            [(a["account_id"].encode(), orjson.dumps(a)) for a in surges],
        )
        hook = server.wait_accepted("/hook", 180)
        slack = server.wait_accepted("/slack", 120)
        server.wait_accepted("/accounts", 5)
        wait_committed(deployment, 180)
        time.sleep(1.0)  # anything sent twice would arrive by now
    finally:
        assert sink.stop() == 0
        server.stop()

    hook, slack = server.accepted("/hook"), server.accepted("/slack")
    print(f"webhook: {summary(hook)}, slack: {summary(slack)}")
    # 20 per second after a burst of 20: 120 messages cannot arrive in under 5 s.
    arrivals = [r.at for r in slack]
    assert max(arrivals) - min(arrivals) >= 4.5, "the Slack endpoint's rate limit held"
    assert sorted(r.key for r in hook) == sorted(a["action_id"] for a in actions)
    assert sorted(r.key for r in slack) == [f"act-{i:05d}" for i in range(120)]
    # account actions only where account_* asked for them ("*" means lead actions)
    assert sorted(r.key for r in server.accepted("/accounts")) == sorted(
        a["action_id"] for a in surges
    )
    for r in hook:
        sent = json.loads(r.body)
        assert sent["action_id"] == r.key
        assert signature_is_valid(
            SECRET.encode(),
            r.headers["X-Leadscore-Timestamp"],
            r.headers["X-Leadscore-Signature"],
            r.body,
            now=time.time(),
        )
        assert not signature_is_valid(
            b"another secret",
            r.headers["X-Leadscore-Timestamp"],
            r.headers["X-Leadscore-Signature"],
            r.body,
            now=time.time(),
        )
    by_id = {a["action_id"]: a for a in actions}
    message = json.loads(slack[0].body)
    sent = by_id[slack[0].key]
    assert message["text"].startswith(
        f"*{sent['contact_id']}* crossed *mql*: score {sent['score']:g} (was 55)"
    )
    assert "Why: demo-request 30" in message["text"]
    assert "<https://crm.example/leads/contact-" in message["text"]


def test_failures_are_retried_and_a_dead_endpoint_is_dead_lettered(
    deployment: Deployment, tmp_path
) -> None:
    server = WebhookServer(free_port()).start()
    server.behave("/flaky", Behaviour(fail_first=2))
    server.behave("/limited", Behaviour(fail_first=1, fail_status=429, retry_after="2"))
    server.behave("/stalls", Behaviour(stall_first=1, stall=3.0))
    server.behave("/dead", Behaviour(status=500))
    server.behave("/refuses", Behaviour(status=422))
    fast = {"backoff_initial_seconds": 0.05, "backoff_max_seconds": 0.2, "breaker_failures": 1000}
    config = endpoints_file(
        tmp_path,
        server,
        [
            {"name": "flaky", "path": "/flaky", **fast},
            {"name": "limited", "path": "/limited", **fast},
            {"name": "stalls", "path": "/stalls", "timeout_seconds": 1.0, **fast},
            {"name": "dead", "path": "/dead", "max_attempts": 3, **fast},
            {"name": "refuses", "path": "/refuses", **fast},
        ],
    )
    metrics_port = free_port()
    sink = deployment.notify_sink(
        config, TEST_WEBHOOK_SECRET=SECRET, LEADSCORE_SINK_METRICS_PORT=str(metrics_port)
    ).start()
    actions = [action(i) for i in range(20)]
    keys = sorted(a["action_id"] for a in actions)
    try:
        send_actions(deployment, actions)
        for path in ("/flaky", "/limited", "/stalls"):
            server.wait_accepted(path, len(actions))
        dead_letters = consume(deployment.bootstrap, deployment.topic("sink-dlq"), 40)
        wait_committed(deployment, len(actions))
        # the circuit and in-flight gauges are refreshed with each commit
        settled = ('leadscore_sink_circuit_state{endpoint="flaky",sink="notify"} 0.0',
                   'leadscore_sink_in_flight{sink="notify"} 0.0')  # fmt: skip

        def settled_metrics() -> str | None:
            text: str = get(metrics_port, "/metrics").body
            return text if all(line in text for line in settled) else None

        metrics = wait_until(settled_metrics, "circuit closed and nothing in flight")
    finally:
        assert sink.stop() == 0
        server.stop()

    for path, tries in (("/flaky", 3), ("/limited", 2), ("/stalls", 2)):
        assert sorted(r.key for r in server.accepted(path)) == keys, path
        for key, requests in server.attempts(path).items():
            assert len(requests) == tries, (path, key)
    for requests in server.attempts("/limited").values():
        assert requests[1].at - requests[0].at >= 2.0, "Retry-After: 2 was honoured"
    assert all(len(r) == 3 for r in server.attempts("/dead").values())
    assert all(len(r) == 1 for r in server.attempts("/refuses").values()), "a 422 is final"

    by_endpoint: dict[str, list[Any]] = {}
    for record in dead_letters:
        headers = {k: v.decode() for k, v in record.headers()}
        by_endpoint.setdefault(headers["leadscore.endpoint"], []).append((record, headers))
        assert json.loads(record.value())["action_id"] in keys, "the original action is kept"
    assert sorted(by_endpoint) == ["dead", "refuses"]
    dead = by_endpoint["dead"]
    assert len(dead) == len(actions)
    assert {h["leadscore.error.message"] for _, h in dead} == {"HTTP 500"}
    assert {h["leadscore.attempts"] for _, h in dead} == {"3"}
    assert {h["leadscore.error.message"] for _, h in by_endpoint["refuses"]} == {"HTTP 422"}

    def metric(name: str, **labels: str) -> float:
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in metrics.splitlines():
            if line.startswith(f"{name}{{") and line.split("}")[0][len(name) + 1 :] == wanted:
                return float(line.split()[-1])
        raise AssertionError(f"{name}{{{wanted}}} not exported")

    delivered = "leadscore_sink_deliveries_total"
    assert metric(delivered, endpoint="flaky", outcome="delivered", sink="notify") == 20
    assert metric(delivered, endpoint="dead", outcome="dead_lettered", sink="notify") == 20
    assert metric("leadscore_sink_delivery_attempts_total", endpoint="flaky", sink="notify") == 60
    assert (
        metric("leadscore_sink_dead_letters_total", reason="delivery_failed", sink="notify") == 40
    )
    assert metric("leadscore_sink_circuit_state", endpoint="flaky", sink="notify") == 0
    assert metric("leadscore_sink_in_flight", sink="notify") == 0
    latency = "leadscore_sink_action_to_delivery_seconds_count"
    assert metric(latency, endpoint="limited", sink="notify") == 20


def test_an_endpoint_that_goes_away_and_comes_back_gets_everything_once(
    deployment: Deployment, tmp_path
) -> None:
    server = WebhookServer(free_port()).start()
    server.behave("/hook", Behaviour())
    config = endpoints_file(
        tmp_path,
        server,
        [
            {
                "name": "crm-hook",
                "path": "/hook",
                "max_attempts": 30,
                "backoff_initial_seconds": 0.1,
                "backoff_max_seconds": 0.5,
                "breaker_failures": 3,
                "breaker_cooldown_seconds": 0.5,
            }
        ],
    )
    server.stop()  # gone: connections are refused
    sink = deployment.notify_sink(config, TEST_WEBHOOK_SECRET=SECRET).start()
    actions = [action(i) for i in range(30)]
    try:
        send_actions(deployment, actions)
        time.sleep(3.0)
        assert committed(deployment) == 0, "nothing is committed while the endpoint is away"
        server.start()  # back on the same port
        server.wait_accepted("/hook", len(actions))
        wait_committed(deployment, len(actions))
        time.sleep(1.0)
    finally:
        assert sink.stop() == 0
        server.stop()
    accepted = server.accepted("/hook")
    assert sorted(r.key for r in accepted) == sorted(a["action_id"] for a in actions)
    assert summary(accepted)["repeated"] == 0


def test_a_killed_sink_restarted_skips_nothing_and_repeats_nothing_it_recorded(
    deployment: Deployment, tmp_path
) -> None:
    server = WebhookServer(free_port()).start()
    server.behave("/hook", Behaviour(delay=0.02))
    config = endpoints_file(
        tmp_path, server, [{"name": "crm-hook", "path": "/hook", "max_concurrency": 4}]
    )
    actions = [action(i) for i in range(400)]
    send_actions(deployment, actions)
    kills: list[float] = []
    try:
        for _ in range(2):
            sink = deployment.notify_sink(config, TEST_WEBHOOK_SECRET=SECRET).start()
            target = len({r.key for r in server.accepted("/hook")}) + 80
            server.wait_accepted("/hook", target)
            sink.kill()
            kills.append(time.time())
        sink = deployment.notify_sink(config, TEST_WEBHOOK_SECRET=SECRET).start()
        server.wait_accepted("/hook", len(actions), timeout=120)
        wait_committed(deployment, len(actions))
        time.sleep(1.0)
    finally:
        sink.stop()
        server.stop()

    accepted = server.accepted("/hook")
    counts = summary(accepted)
    print(f"after {len(kills)} SIGKILLs: {counts}")
    assert {r.key for r in accepted} == {a["action_id"] for a in actions}, "nothing skipped"
    # A delivery answered before a kill and recorded in the ledger is never sent again; only
    # the ones in flight at the kill (at most max_concurrency) can be, with the same key.
    first: dict[str | None, float] = {}
    for r in sorted(accepted, key=lambda r: r.answered_at):
        first.setdefault(r.key, r.answered_at)
    repeated = [r for r in accepted if r.answered_at > first[r.key]]
    for r in repeated:
        assert any(0 <= kill - first[r.key] < 1.0 for kill in kills), "only in-flight ones repeat"
    assert len(repeated) <= 4 * len(kills)


def rss_peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_hostile_endpoint_and_invalid_actions_cannot_stop_or_steer_the_sink(
    deployment: Deployment, tmp_path
) -> None:
    """Issue 19: redirects (to a second server that must receive nothing), a 200 MB body,
    a Retry-After of "²", an outage longer than the attempt budget, invalid actions; the
    webhook URL's secret path never reaches a log line or a dead-letter header."""
    thief = WebhookServer(free_port()).start()
    thief.behave("/steal", Behaviour())
    server = WebhookServer(free_port()).start()
    stolen = f"http://127.0.0.1:{thief.port}/steal"
    server.behave("/r307/SECRET-PATH-307", Behaviour(status=307, location=stolen))
    server.behave("/r302/SECRET-PATH-302", Behaviour(status=302, location=stolen))
    server.behave("/huge", Behaviour(body_bytes=200 * 1_048_576))
    server.behave("/garbled", Behaviour(fail_first=1, fail_status=503, retry_after="²"))
    server.behave("/away", Behaviour())
    outage = {
        "max_attempts": 3,
        "backoff_initial_seconds": 0.05,
        "backoff_max_seconds": 0.2,
        "breaker_failures": 2,
        "breaker_cooldown_seconds": 1.0,
    }
    config = endpoints_file(
        tmp_path,
        server,
        [
            {"name": "r307", "path": "/r307/SECRET-PATH-307", "kind": "slack"},
            {"name": "r302", "path": "/r302/SECRET-PATH-302"},
            {"name": "huge", "path": "/huge"},
            {"name": "garbled", "path": "/garbled", "backoff_initial_seconds": 0.05},
        ],
    )
    # The endpoint that goes away is on a third server, so stopping it leaves the others up.
    away = WebhookServer(free_port()).start()
    away.behave("/away", Behaviour())
    spec = yaml.safe_load(config.read_text())
    spec["endpoints"].append(
        {"name": "away", "kind": "webhook", "secret_env": "TEST_WEBHOOK_SECRET",
         "url": f"http://127.0.0.1:{away.port}/away", **outage}
    )  # fmt: skip
    config.write_text(yaml.safe_dump(spec))
    away.stop()

    good = [action(i) for i in range(10)]
    no_previous = {k: v for k, v in action(100).items() if k != "previous_score"}
    text_score = {**action(101), "score": "61"}
    escape_id = {**action(102), "contact_id": "eve\x1b[2J"}
    invalid = [no_previous, text_score, escape_id]
    sink = deployment.notify_sink(config, TEST_WEBHOOK_SECRET=SECRET).start()
    try:
        send_actions(deployment, [*good[:5], *invalid, *good[5:]])
        # The outage lasts far longer than 3 attempts with 0.2 s backoff.
        time.sleep(12.0)
        assert sink.proc is not None
        assert sink.proc.poll() is None, "the sink stopped"
        away.start()
        away.wait_accepted("/away", len(good), timeout=30)
        server.wait_accepted("/garbled", len(good))
        dead = consume(deployment.bootstrap, deployment.topic("sink-dlq"), 2 * len(good) + 3)
        wait_committed(deployment, len(good) + len(invalid))
        peak = rss_peak_mib(sink.proc.pid)
    finally:
        assert sink.stop() == 0
        for s in (server, thief, away):
            s.stop()

    assert thief.received == [], "a redirect steered a delivery to another server"
    by_reason: dict[str, list[dict[str, str]]] = {}
    for record in dead:
        headers = {k: v.decode() for k, v in record.headers()}
        by_reason.setdefault(headers["leadscore.error.reason"], []).append(headers)
        assert "SECRET-PATH" not in " ".join(headers.values())
    assert len(by_reason["invalid_action"]) == len(invalid)
    redirected = by_reason["delivery_failed"]
    assert sorted(h["leadscore.endpoint"] for h in redirected) == ["r302"] * 10 + ["r307"] * 10
    assert {h["leadscore.error.message"].split(":")[0] for h in redirected} == {
        "HTTP 302",
        "HTTP 307",
    }
    assert all(len(r) == 1 for r in server.attempts("/huge").values()), "a big body is no error"
    assert len(server.attempts("/huge")) == len(good)
    assert peak < 150, f"the sink read a 200 MB body: peak RSS {peak:.0f} MiB"
    assert all(len(r) == 2 for r in server.attempts("/garbled").values())
    assert "SECRET-PATH" not in sink.log()
