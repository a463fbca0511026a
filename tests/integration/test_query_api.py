"""The lead query API with two workers in one group: any worker answers for any lead."""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import subprocess
import sys
import threading
import time
import urllib.error
from collections import Counter
from importlib import resources
from pathlib import Path

import orjson
from aiokafka.partitioner import DefaultPartitioner

from leadscore.api import served_document
from leadscore.scoring import EngagementEvent, LeadRecord, apply_event, load_rules
from tests.contract import check, documented_paths
from tests.integration.test_pipeline import ev, values
from tests.support.deployments import Deployment
from tests.support.http import Answer, free_port, get, wait_ready, wait_until
from tests.support.processes import Process
from tests.support.records import consume, produce, read_all

TOKEN = "test-token-1"
partitioner = DefaultPartitioner()
CONTACTS = [f"lead-{i}" for i in range(24)]
BASE_ACCOUNT = "acct-base"  # the account of CONTACTS
HOT = set(CONTACTS[:12])  # signup + demo request: 50 points, hot; the others 20, warm


def expected(contact: str) -> tuple[float, str]:
    return (50.0, "hot") if contact in HOT else (20.0, "warm")


def two_workers(
    deployment: Deployment, start_worker, root: Path, **env: str
) -> tuple[list[int], list[Process], list[list[int]]]:
    """Two ready workers with the leads loaded: their ports, processes and partitions."""
    deployment.extra.update(LEADSCORE_WEB_ENABLED="true", LEADSCORE_API_TOKEN=TOKEN, **env)
    ports = [free_port(), free_port()]
    workers = [
        start_worker(LEADSCORE_WEB_PORT=str(port), LEADSCORE_DATA_DIR=str(root / f"s{i}"))
        for i, port in enumerate(ports)
    ]
    at = int(time.time() * 1000)
    produce(
        deployment.bootstrap,
        deployment.topic("events"),
        [ev(f"{c}-1", c, "signup", at, account_id=BASE_ACCOUNT) for c in CONTACTS]
        + [ev(f"{c}-2", c, "demo_request", at + 1) for c in sorted(HOT)],
    )
    consume(deployment.bootstrap, deployment.topic("lead-state"), 36)
    return ports, workers, [wait_ready(port) for port in ports]


def test_every_lead_is_answered_through_either_worker(
    deployment: Deployment, start_worker, tmp_path
) -> None:
    ports, _, owned = two_workers(deployment, start_worker, tmp_path)
    assert sorted(owned[0] + owned[1]) == [0, 1, 2]
    assert owned[0]
    assert owned[1]
    # The partition a contact's events (and so its state) live in: murmur2, as Faust routes.
    owner = {
        c: 0 if partitioner(c.encode(), [0, 1, 2], [0, 1, 2]) in owned[0] else 1 for c in CONTACTS
    }
    assert set(owner.values()) == {0, 1}, "each worker owns some of the leads"

    for contact in CONTACTS:
        score, stage = expected(contact)
        for i, port in enumerate(ports):
            answer = get(port, f"/leads/{contact}", TOKEN)
            assert answer.status == 200, answer.body
            check(answer.body, "LeadState")
            assert (answer.body["contact_id"], answer.body["score"]) == (contact, score)
            assert answer.body["stage"] == stage
            forwarded = answer.headers.get("X-Leadscore-Forwarded") == "1"
            assert forwarded == (owner[contact] != i), "answered by the owner, else forwarded"

            intel = get(port, f"/leads/{contact}/intelligence", TOKEN)
            assert intel.status == 200
            check(intel.body, "Intelligence")
            assert "traits" not in intel.body
            assert intel.body["reasons"][0]["rule_id"] == (
                "demo-request" if contact in HOT else "signup"
            )

            history = get(port, f"/leads/{contact}/history", TOKEN)
            assert history.status == 200
            check(history.body, "History")
            assert [c["event_type"] for c in history.body["changes"]] == (
                ["demo_request", "signup"] if contact in HOT else ["signup"]
            )
            assert history.body["changes"][0]["new_score"] == score
            assert history.body["kept_per_lead"] == 20
        latest = get(ports[owner[contact] ^ 1], f"/leads/{contact}/history?limit=1", TOKEN)
        assert len(latest.body["changes"]) == 1
        assert latest.headers.get("X-Leadscore-Forwarded") == "1"

    states = values(consume(deployment.bootstrap, deployment.topic("lead-state"), 36))
    assert {s["contact_id"] for s in states} == set(CONTACTS)


def test_errors_auth_metrics_and_the_document(
    deployment: Deployment, start_worker, tmp_path
) -> None:
    ports, _, _ = two_workers(deployment, start_worker, tmp_path)
    errors = {
        "/leads/nobody": (404, "not_found"),
        "/leads/a%07b": (400, "invalid_contact_id"),
        f"/leads/{'x' * 257}": (400, "invalid_contact_id"),
        "/leads/lead-1?at=yesterday": (400, "invalid_at"),
        "/leads/lead-1/history?limit=0": (400, "invalid_limit"),
        "/leads/lead-1/history?limit=1001": (400, "invalid_limit"),
        # Each of these was a 500 with a traceback before (issue 19).
        "/leads/lead-1/history?limit=%C2%B2": (400, "invalid_limit"),
        f"/leads/lead-1/history?limit={'9' * 5000}": (400, "invalid_limit"),
        f"/leads/lead-1?at=1{'0' * 400}": (400, "invalid_at"),
        "/leads/a%E2%80%AEb": (400, "invalid_contact_id"),
        "/no/such/endpoint": (404, "not_found"),
        "/table/leads/": (404, "not_found"),  # Faust's own table pages are off
        "/router/": (404, "not_found"),
    }
    for port in ports:
        for path, (status, code) in errors.items():
            answer = get(port, path, TOKEN)
            assert (answer.status, answer.body["error"]["code"]) == (status, code), path
            check(answer.body, "Error")
        assert get(port, "/leads/lead-1/history?limit=500", TOKEN).status == 200
        for method in ("POST", "TRACE", "DELETE"):
            answer = get(port, "/leads/lead-1", TOKEN, method=method)
            assert (answer.status, answer.body["error"]["code"]) == (405, "method_not_allowed")
            assert set(answer.headers["Allow"].split(",")) >= {"GET"}, "RFC 9110: Allow"
        for header in ("Bearer t\u00f6k\u00e9n", "Bearer " + "x" * 8000, "Basic Zm9v"):
            answer = get_with_authorization(port, "/leads/lead-1", header)
            assert (answer.status, answer.body["error"]["code"]) == (401, "unauthorized")

        # Token: everything but healthz and readyz needs it.
        for path in documented_paths() - {"/healthz", "/readyz"}:
            path = path.replace("{contact_id}", "lead-1").replace("{account_id}", BASE_ACCOUNT)
            for token in (None, "wrong"):
                answer = get(port, path, token)
                assert (answer.status, answer.body["error"]["code"]) == (401, "unauthorized")
            assert get(port, path, TOKEN).status == 200, path
        assert get(port, "/healthz").body == {"status": "alive"}
        assert get(port, "/readyz").status == 200

        served = get(port, "/openapi.json", TOKEN)
        document = resources.files("leadscore").joinpath("openapi.json").read_bytes()
        assert served.body == json.loads(served_document(document, load_rules()))
        stage = next(
            p for p in served.body["paths"]["/leads"]["get"]["parameters"] if p["name"] == "stage"
        )
        assert stage["schema"]["enum"] == [s.name for s in load_rules().stages]

    # Metrics: the events each worker scored add up to what was produced (counted
    # once a batch's outputs are acknowledged, a moment after a reader saw them).
    def scored() -> float:
        return sum(
            float(line.split()[-1])
            for port in ports
            for line in get(port, "/metrics", TOKEN).body.splitlines()
            if line.startswith('leadscore_events_total{outcome="scored"}')
        )

    wait_until(lambda: scored() == 36, "36 events scored")
    for port in ports:
        text = get(port, "/metrics", TOKEN).body
        assert 'leadscore_build_info{rules_version="default-1",version="0.1.0"} 1.0' in text
        assert 'leadscore_api_requests_total{route="/leads/{contact_id}",status="404"}' in text
        assert "contact_id=" not in text.replace("{contact_id}", ""), "no contact ids as labels"


def get_with_authorization(port: int, path: str, header: str) -> Answer:
    """A GET whose Authorization header is sent as given (latin-1, as HTTP/1.1 allows)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest("GET", path)
        connection.putheader("Authorization", header.encode("latin-1"))
        connection.endheaders()
        response = connection.getresponse()
        return Answer(response.status, json.loads(response.read()), dict(response.getheaders()))
    finally:
        connection.close()


def test_a_fuzzer_finds_no_disagreement_between_the_api_and_its_document(
    deployment: Deployment, start_worker, tmp_path
) -> None:
    """schemathesis with all its checks against a live worker with a token (issue 19)."""
    ports, _, _ = two_workers(deployment, start_worker, tmp_path)
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("st")),
            "run",
            f"http://127.0.0.1:{ports[0]}/openapi.json",
            "--checks=all",
            f"--header=Authorization: Bearer {TOKEN}",
            "--max-examples=60",
            "--workers=1",
            "--seed=19",
            "--request-timeout=10",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=tmp_path,  # schemathesis keeps a cache in .schemathesis/ where it runs
    )
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    assert " passed" in result.stdout, report


def test_workers_sharing_one_url_answer_503_and_say_how_to_fix_it(
    deployment: Deployment, start_worker, tmp_path
) -> None:
    """Two workers advertising the same URL each took the other's leads for their own
    and answered 404 for them (issue 19)."""
    shared = f"http://127.0.0.1:{free_port()}"
    ports, workers, owned = two_workers(
        deployment, start_worker, tmp_path, LEADSCORE_WEB_URL=shared
    )
    for contact in CONTACTS:
        partition = partitioner(contact.encode(), [0, 1, 2], [0, 1, 2])
        for i, port in enumerate(ports):
            answer = get(port, f"/leads/{contact}", TOKEN)
            if partition in owned[i]:
                assert answer.status == 200, answer.body
            else:
                assert answer.status == 503, (contact, i, answer.body)
    assert any("another worker advertises this worker's URL" in w.log() for w in workers)


def test_a_worker_that_would_serve_the_api_open_to_the_network_refuses_to_start(
    deployment: Deployment,
) -> None:
    for env, fragment in [
        ({"LEADSCORE_WEB_HOST": "0.0.0.0"}, "LEADSCORE_API_TOKEN is not set"),
        ({"LEADSCORE_API_TOKEN": ""}, "LEADSCORE_API_TOKEN is empty"),
    ]:
        worker = deployment.worker(LEADSCORE_WEB_ENABLED="true", **env).launch()
        assert worker.proc is not None
        assert worker.proc.wait(60) != 0
        assert fragment in worker.log()


def poll(ports: list[int], stop: threading.Event, seen: list[tuple[str, Answer]]) -> None:
    """GET every lead, the ranked list of all of them and their account, through both
    workers until stopped, keeping every HTTP answer (the list's as contact "*", the
    account's as "@")."""
    paths = {"*": f"/leads?limit={len(CONTACTS)}", "@": f"/accounts/{BASE_ACCOUNT}"}
    while not stop.is_set():
        for contact in [*CONTACTS, "*", "@"]:
            path = paths.get(contact, f"/leads/{contact}")
            for port in ports:
                # The restarted worker's port is closed while it is down.
                with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError):
                    seen.append((contact, get(port, path, TOKEN)))


def test_a_query_during_a_restart_answers_503_then_the_right_state(
    deployment: Deployment, start_worker, tmp_path
) -> None:
    ports, workers, _ = two_workers(deployment, start_worker, tmp_path)
    base = sum(expected(c)[0] for c in CONTACTS)  # the account of every lead: 840 points

    def rolled_up() -> bool:
        answer = get(ports[0], f"/accounts/{BASE_ACCOUNT}", TOKEN)
        return answer.status == 200 and answer.body["contacts"] == len(CONTACTS)

    wait_until(rolled_up, "the account rolled up")
    seen: list[tuple[str, Answer]] = []
    stop = threading.Event()
    poller = threading.Thread(target=poll, args=(ports, stop, seen), daemon=True)
    poller.start()
    try:
        time.sleep(1.0)
        workers[1].stop()  # the group rebalances: worker 0 takes every partition
        wait_ready(ports[0], partitions=3)
        start_worker(
            LEADSCORE_WEB_PORT=str(ports[1]), LEADSCORE_DATA_DIR=str(tmp_path / "s1")
        )  # and again when it is back
        owned = [wait_ready(port) for port in ports]
        assert sorted(owned[0] + owned[1]) == [0, 1, 2]
        time.sleep(1.0)
    finally:
        stop.set()
        poller.join(30)

    outcomes = Counter(answer.status for _, answer in seen)
    print(f"answers during the restart: {dict(outcomes)}")
    assert set(outcomes) <= {200, 503}, outcomes  # never a 404 or 500
    assert outcomes[503] > 0, "the rebalance was visible as 503s"
    lists = [answer for contact, answer in seen if contact == "*" and answer.status == 200]
    assert lists, "the ranked list was answered during the restart"
    for contact, answer in seen:
        if answer.status == 200 and contact == "*":  # never a list with leads missing
            assert answer.body["partitions"] == [0, 1, 2]
            listed = {x["contact_id"]: x for x in answer.body["leads"]}
            assert listed.keys() == set(CONTACTS)
            for c, x in listed.items():
                assert abs(x["score"] - expected(c)[0]) < 0.01
                assert x["stage"] == expected(c)[1]
        elif answer.status == 200 and contact == "@":  # the account, whole
            assert answer.body["contacts"] == len(CONTACTS)
            assert abs(answer.body["score"] - base) < 0.01
        elif answer.status == 200:
            assert (answer.body["score"], answer.body["stage"]) == expected(contact)
        else:
            assert answer.body["error"]["code"] in ("unavailable", "not_ready")
            assert answer.headers["Retry-After"] == "5"
    for contact in CONTACTS:
        for port in ports:
            answer = get(port, f"/leads/{contact}", TOKEN)
            assert answer.status == 200
            assert (answer.body["score"], answer.body["stage"]) == expected(contact)


def test_ranked_lists_agree_across_workers_and_with_a_scan_of_every_lead(
    deployment: Deployment, start_worker, tmp_path
) -> None:
    """GET /leads and /leads/cooling gathered from either worker: the same list, every
    partition covered, in the order and with the scores a scan of every lead's state
    gives (scores decayed to the list's time), filters applied."""
    ports, _, owned = two_workers(deployment, start_worker, tmp_path)
    rules = load_rules()
    now = int(time.time() * 1000)
    rng = random.Random(23)
    kinds = ["page_view", "email_open", "download", "signup", "demo_request"]
    more = []
    for n in range(60):
        contact = f"ranked-{n}"
        at = now - rng.randrange(5 * 86_400_000)  # up to 5 days back: decay reorders them
        account = f"acct-{n % 3}"
        for k in range(rng.randint(1, 4)):
            kind = rng.choice(kinds)
            more.append(ev(f"{contact}-{k}", contact, kind, at + k, account_id=account))
    produce(deployment.bootstrap, deployment.topic("events"), more)
    states = values(consume(deployment.bootstrap, deployment.topic("lead-state"), 36 + len(more)))
    latest = {s["contact_id"]: s for s in states}  # the last state of each lead
    assert len(latest) == len(CONTACTS) + 60

    def scan(at: int, stage: str | None = None, account: str | None = None) -> list[tuple]:
        found = [
            (s["score"] * rules.decay_factor(at - s["last_event_at"]), s["contact_id"])
            for s in latest.values()
            if (stage is None or s["stage"] == stage)
            and (account is None or s["account_id"] == account)
        ]
        return sorted(found, reverse=True)

    for query, stage, account, limit in [
        ("limit=10", None, None, 10),
        ("sort=score&limit=100&stage=hot", "hot", None, 100),
        ("limit=5&account_id=acct-1", None, "acct-1", 5),
    ]:
        answers = [get(port, f"/leads?{query}", TOKEN) for port in ports]
        for answer in answers:
            assert answer.status == 200, answer.body
            check(answer.body, "LeadList")
            assert answer.body["partitions"] == [0, 1, 2]
        first = answers[0].body
        want = scan(first["as_of"], stage, account)[:limit]
        assert [x["contact_id"] for x in first["leads"]] == [c for _, c in want], query
        for listed, (score, _) in zip(first["leads"], want, strict=True):
            assert abs(listed["score"] - score) < 1e-3
            assert stage is None or listed["stage"] == stage
        assert [x["contact_id"] for x in answers[1].body["leads"]] == [c for _, c in want]

    floor = get(ports[1], "/leads?limit=1000&min_score=25", TOKEN).body
    assert floor["leads"]
    assert all(x["score"] >= 25 for x in floor["leads"])
    assert len(floor["leads"]) == sum(1 for s, _ in scan(floor["as_of"]) if s >= 25)

    cooling = [get(port, "/leads/cooling?within=90d&limit=1000", TOKEN) for port in ports]
    for answer in cooling:
        assert answer.status == 200, answer.body
        check(answer.body, "CoolingList")
    body = cooling[0].body
    above_bottom = {c for c, s in latest.items() if s["stage"] != rules.stages[0].name}
    assert {x["contact_id"] for x in body["leads"]} == above_bottom
    assert [x["contact_id"] for x in cooling[1].body["leads"]] == [
        x["contact_id"] for x in body["leads"]
    ]
    bottoms = {stage.name: stage.min_score for stage in rules.stages}
    for x in body["leads"]:
        state = latest[x["contact_id"]]
        at_drop = state["score"] * rules.decay_factor(x["drops_at"] - state["last_event_at"])
        assert at_drop < bottoms[x["stage"]]  # below its stage's bottom by then,
        if x["drops_at"] > state["last_event_at"]:  # and only just (unless below it already)
            assert bottoms[x["stage"]] <= at_drop + 1e-3
    assert [x["drops_at"] for x in body["leads"]] == sorted(x["drops_at"] for x in body["leads"])

    # A worker's own part, as another worker asks for it; an X-Leadscore-At that is no
    # epoch ms means now (never a 500).
    for at in ("not-a-time", "1" * 400, str(floor["as_of"])):
        headers = {"X-Leadscore-Forwarded": "1", "X-Leadscore-At": at}
        part = get(ports[0], "/leads?limit=1000", TOKEN, extra_headers=headers)
        assert part.status == 200, part.body
        assert part.body["partitions"] == owned[0]
    assert get(ports[0], "/leads?sort=name", TOKEN).status == 400
    assert get(ports[0], "/leads?stage=lukewarm", TOKEN).status == 400
    assert get(ports[0], "/leads/cooling?within=1y", TOKEN).status == 400


def test_accounts_are_the_sum_of_their_contacts_and_answered_by_either_worker(
    deployment: Deployment, start_worker, tmp_path
) -> None:
    """Each account's engagement, from either worker, is the sum of its contacts' scores
    as their lead states say (decayed to the answer's time); a contact that moves takes
    its score along; stage changes and threshold crossings go to the account-actions
    topic once each, with the top contacts as reasons."""
    ports, _, _ = two_workers(deployment, start_worker, tmp_path)
    rules = load_rules()
    now = int(time.time() * 1000)
    rng = random.Random(7)
    kinds = ["page_view", "email_open", "download", "signup", "demo_request"]
    sent: Counter[str] = Counter()
    events = []
    for n in range(30):
        contact, account = f"member-{n}", f"org-{n % 4}"
        at = now - rng.randrange(3 * 86_400_000)
        for k in range(rng.randint(1, 4)):
            events.append(
                ev(f"{contact}-{k}", contact, rng.choice(kinds), at + k, account_id=account)
            )
            sent[contact] += 1
    # org-hot: six contacts with a demo request and a signup each (300 points): surging
    for n in range(6):
        contact = f"buyer-{n}"
        for k, kind in enumerate(("signup", "demo_request")):
            events.append(ev(f"{contact}-{k}", contact, kind, now + k, account_id="org-hot"))
            sent[contact] += 1
    # a contact that moves from org-0 to org-1 with its score
    events.append(ev("mover-0", "mover", "demo_request", now - 1000, account_id="org-0"))
    events.append(ev("mover-1", "mover", "page_view", now, account_id="org-1"))
    sent["mover"] += 2
    produce(deployment.bootstrap, deployment.topic("events"), events)

    def lead(contact: str) -> dict | None:
        answer = get(ports[0], f"/leads/{contact}", TOKEN)
        return (
            answer.body
            if answer.status == 200 and answer.body["event_count"] == sent[contact]
            else None
        )

    leads = {c: wait_until(lambda c=c: lead(c), f"{c} scored") for c in sent}
    assert leads["mover"]["account_id"] == "org-1"

    # The reference: the pure core over each contact's events, in event-time order.
    core: dict[str, LeadRecord] = {}
    for _, value in sorted(events, key=lambda kv: orjson.loads(kv[1])["occurred_at"]):
        event = EngagementEvent.model_validate(orjson.loads(value))
        previous = core.get(event.contact_id)
        core[event.contact_id] = apply_event(previous, event, rules, event.occurred_at).record
    for contact, record in core.items():
        assert abs(leads[contact]["score"] - record.score) < 1e-3, contact

    def reference(account: str, at: int) -> tuple[float, list[str]]:
        members = [
            (r.score * rules.decay_factor(at - r.ref_ms), c)
            for c, r in core.items()
            if r.account_id == account
        ]
        ranked = sorted(members, key=lambda m: (-round(m[0], 6), m[1]))  # ties: by id
        return sum(x for x, _ in members), [c for _, c in ranked]

    def settled(port: int, account: str) -> dict | None:
        answer = get(port, f"/accounts/{account}", TOKEN)
        if answer.status != 200:
            return None
        members = sum(1 for r in core.values() if r.account_id == account)
        return answer.body if answer.body["contacts"] == members else None

    for account in ["org-0", "org-1", "org-2", "org-3", "org-hot"]:
        for port in ports:
            body = wait_until(lambda p=port, a=account: settled(p, a), f"{account} rolled up")
            check(body, "AccountState")
            total, order = reference(account, body["updated_at"])
            assert abs(body["current_score"] - total) < 1e-3 * max(1.0, total), (account, body)
            assert [x["contact_id"] for x in body["top_contacts"]] == order[:10]
            listed = get(port, f"/accounts/{account}/contacts?limit=3", TOKEN)
            assert listed.status == 200
            check(listed.body, "AccountContacts")
            assert [x["contact_id"] for x in listed.body["contacts"]] == order[:3]
    # The stage is assessed at the latest event; decay since then moves it at the next
    # tick (the accounts' timer wheel), so it soon agrees with the current engagement.
    for account in ["org-0", "org-1", "org-2", "org-3", "org-hot"]:

        def agrees(account: str = account) -> dict | None:
            body = get(ports[0], f"/accounts/{account}", TOKEN).body
            return (
                body if body["stage"] == rules.accounts.stage_for(body["current_score"]) else None
            )

        wait_until(agrees, f"{account}'s stage follows its decayed engagement")
    assert "mover" in [
        x["contact_id"] for x in get(ports[1], "/accounts/org-1/contacts", TOKEN).body["contacts"]
    ]
    assert "mover" not in [
        x["contact_id"] for x in get(ports[1], "/accounts/org-0/contacts", TOKEN).body["contacts"]
    ]
    hot = get(ports[1], "/accounts/org-hot", TOKEN).body
    assert hot["stage"] == "surging"
    assert hot["engaged_contacts"] == 6

    # the account settled: its actions were sent before its state was written
    actions = values(read_all(deployment.bootstrap, deployment.topic("account-actions")))
    assert len({a["action_id"] for a in actions}) == len(actions), "each action once"
    surge = [a for a in actions if a["account_id"] == "org-hot"]
    assert [(a["kind"], a["name"]) for a in surge][-1] == (
        "account_threshold_crossed",
        "account_surge",
    )
    assert {a["contact_id"] for a in surge[-1]["top_contacts"]} <= {f"buyer-{n}" for n in range(6)}

    for port in ports:
        assert get(port, "/accounts/no-such-org", TOKEN).status == 404
        bad = get(port, "/accounts/%E2%80%AEx", TOKEN)
        assert (bad.status, bad.body["error"]["code"]) == (400, "invalid_account_id")
