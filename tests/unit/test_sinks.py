"""The notification sink's parts that need no broker: offsets, breaker, config, bodies, signing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leadscore.errors import ConfigError
from leadscore.sinks.breaker import CircuitBreaker
from leadscore.sinks.delivery import retry_after_seconds
from leadscore.sinks.ledger import Ledger
from leadscore.sinks.messages import slack_body
from leadscore.sinks.notify_config import load_notify_config, redact_url
from leadscore.sinks.offsets import PartitionProgress
from leadscore.sinks.signing import sign, signature_is_valid


@given(
    st.lists(st.integers(0, 10), min_size=1, max_size=40).map(
        lambda gaps: [sum(gaps[: i + 1]) + i for i in range(len(gaps))]
    ),
    st.randoms(),
)
def test_the_committed_offset_never_passes_an_unfinished_record(offsets, rnd) -> None:
    progress = PartitionProgress()
    for offset in offsets:
        progress.started(offset)
    order = list(offsets)
    rnd.shuffle(order)
    finished: set[int] = set()
    for offset in order:
        progress.finished(offset)
        finished.add(offset)
        commit = progress.to_commit()
        if commit is not None:
            progress.committed = commit
            assert all(o in finished for o in offsets if o < commit), "a restart skips nothing"
    assert progress.committed == offsets[-1] + 1


def test_the_breaker_opens_fails_fast_and_tries_again_after_the_cooldown() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failures=3, cooldown=10, clock=lambda: now[0])
    for _ in range(3):
        assert breaker.allow()
        breaker.failure()
    assert breaker.state == "open"
    assert not breaker.allow()
    now[0] = 10.0
    assert breaker.allow(), "one trial after the cooldown"
    assert not breaker.allow(), "only one at a time"
    breaker.failure()
    assert breaker.state == "open"
    now[0] = 20.0
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed"
    assert breaker.allow()


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after_seconds("7", now=0) == 7.0
    at = datetime(2026, 11, 23, 12, 0, 30, tzinfo=UTC)
    assert (
        retry_after_seconds(
            format_datetime(at, usegmt=True), now=(at - timedelta(seconds=30)).timestamp()
        )
        == 30.0
    )
    assert retry_after_seconds("soon", now=0) is None
    assert retry_after_seconds(None, now=0) is None


@given(st.text(max_size=40))
def test_any_retry_after_header_is_seconds_or_none(value: str) -> None:
    """Issue 19: "²" passes str.isdigit() and made float() raise on every response."""
    seconds = retry_after_seconds(value, now=1_800_000_000)
    assert seconds is None or 0.0 <= seconds <= 86_400.0


@pytest.mark.parametrize("value", ["²", "٣", "1" * 400, "Mon, 01 Jan 99999 00:00:00 GMT", "\x00"])
def test_garbled_retry_after_headers_are_ignored_or_bounded(value: str) -> None:
    seconds = retry_after_seconds(value, now=0)
    assert seconds is None or seconds <= 86_400.0


def test_signatures_verify_only_with_the_secret_body_and_a_fresh_timestamp() -> None:
    body = b'{"action_id":"a1"}'
    signature = sign(b"s3cret", 1_795_000_000, body)
    assert signature.startswith("v1=")
    at, now = "1795000000", 1_795_000_100
    assert signature_is_valid(b"s3cret", at, signature, body, now=now)
    assert not signature_is_valid(b"other", at, signature, body, now=now)
    assert not signature_is_valid(b"s3cret", at, signature, body + b" ", now=now)
    assert not signature_is_valid(b"s3cret", at, signature, body, now=1_795_000_000 + 301)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "notify.yaml"
    path.write_text(text)
    return path


def test_config_resolves_urls_and_secrets_from_the_environment(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
endpoints:
  - {name: sales, kind: slack, url_env: SLACK_URL, actions: ["threshold_crossed:*"]}
  - {name: crm, kind: webhook, url: "https://crm.example/hook", secret_env: CRM_SECRET}
""",
    )
    config = load_notify_config(path, {"SLACK_URL": "https://hooks.example/x", "CRM_SECRET": "k"})
    sales, crm = config.endpoints
    assert (sales.url, sales.secret, crm.secret) == ("https://hooks.example/x", None, b"k")
    assert sales.wants("threshold_crossed", "mql")
    assert not sales.wants("stage_changed", "hot")
    assert crm.wants("stage_changed", "hot")
    with pytest.raises(ConfigError, match="SLACK_URL is not set"):
        load_notify_config(path, {"CRM_SECRET": "k"})


def test_a_url_is_redacted_to_its_scheme_and_host() -> None:
    assert redact_url("https://hooks.slack.com/services/T0/B0/SECRET") == "https://hooks.slack.com"
    assert redact_url("http://127.0.0.1:8080/x?token=SECRET") == "http://127.0.0.1:8080"
    assert "SECRET" not in redact_url("https://user:SECRET@host/x")
    assert redact_url("http://[::1:bad/") == "<invalid URL>"


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://crm.example/hook", "only allowed to a loopback host"),
        ("ftp://crm.example/hook", "must be https"),
        ("https:///SECRET", "must be https"),
        ("http://10.0.0.1:99999/SECRET", "not valid"),
    ],
)
def test_a_url_that_is_not_https_or_loopback_is_refused_without_repeating_it(
    tmp_path: Path, url: str, fragment: str
) -> None:
    path = write(tmp_path, "endpoints: [{name: a, kind: slack, url_env: U}]")
    with pytest.raises(ConfigError, match=fragment) as caught:
        load_notify_config(path, {"U": url})
    assert "SECRET" not in str(caught.value)
    assert "crm.example" not in str(caught.value)


def test_http_to_loopback_or_with_allow_http_is_accepted(tmp_path: Path) -> None:
    for url, allow in [("http://127.0.0.1:9/x", False), ("http://localhost/x", False),
                       ("http://[::1]:9/x", False), ("http://crm.example/x", True)]:  # fmt: skip
        path = write(
            tmp_path, f"endpoints: [{{name: a, kind: slack, url_env: U, allow_http: {allow}}}]"
        )
        assert load_notify_config(path, {"U": url}).endpoints[0].url == url


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("endpoints: []", "at least 1"),
        ("endpoints: [{name: a, kind: slack}]", "exactly one of url and url_env"),
        ("endpoints: [{name: a, kind: webhook, url: 'http://x'}]", "needs secret_env"),
        ("endpoints: [{name: a, kind: slack, url: 'http://x', tries: 3}]", "tries"),
        (
            "endpoints: [{name: a, kind: slack, url: 'http://x'}, {name: a, kind: slack, url: 'http://y'}]",
            "unique",
        ),
    ],
)
def test_config_problems_are_reported(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_notify_config(write(tmp_path, text), {})


def test_slack_message_says_who_score_why_and_links_safely() -> None:
    action = {
        "action_id": "a1",
        "contact_id": "ada<&>",
        "kind": "threshold_crossed",
        "name": "mql",
        "score": 64.5,
        "previous_score": 58.0,
        "stage": "qualified",
        "previous_stage": "hot",
        "reasons": [
            {"rule_id": "page-view", "points": 4.5},
            {"rule_id": "demo-request", "points": 30.0},
            {"rule_id": "signup", "points": 20.0},
            {"rule_id": "email-open", "points": 10.0},
        ],
        "fit": 72.0,
        "grade": "A",
    }
    text = json.loads(slack_body(action, "https://crm.example/leads/{contact_id}"))["text"]
    assert text.startswith("*ada&lt;&amp;&gt;* crossed *mql*: score 64.5 (was 58)")
    assert "Why: demo-request 30, signup 20, email-open 10." in text
    assert "Fit 72 (grade A)." in text
    assert text.endswith("<https://crm.example/leads/ada%3C%26%3E|Open the lead>")


def test_a_ledger_prune_starts_at_the_first_live_entry_even_after_a_restart(
    tmp_path: Path,
) -> None:
    """Issue 19: each prune scanned from the start of the time index, over the tombstones of
    every entry pruned before (the last 10k of 60k adds took 124 s)."""
    ledger = Ledger(tmp_path, ttl_ms=10**12, max_entries=100)
    for i in range(1000):
        ledger.add(f"crm:a{i}", now_ms=1_000 + i)
    assert ledger.count == 100
    low = ledger.low
    live = [k for k in ledger.db.keys(from_key=b"t") if isinstance(k, bytes) and k < b"u"]
    assert len(live) == 100
    assert min(live) >= low, "nothing live below where the next prune starts"
    assert low > b"t" + b"%013d" % 1_899, "the start moved past every pruned entry"
    ledger.close()
    reopened = Ledger(tmp_path, ttl_ms=10**12, max_entries=100)
    assert reopened.low == low
    reopened.add("crm:new", now_ms=5_000)
    assert not reopened.seen("crm:a900")
    assert reopened.seen("crm:a901")
    reopened.close()


def test_the_ledger_is_bounded_and_survives_a_restart(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path, ttl_ms=1000, max_entries=5)
    for i in range(8):
        ledger.add(f"crm:a{i}", now_ms=100 + i)
    assert [ledger.seen(f"crm:a{i}") for i in range(8)] == [False] * 3 + [True] * 5
    ledger.close()
    reopened = Ledger(tmp_path, ttl_ms=1000, max_entries=5)
    assert reopened.seen("crm:a7")
    # Kept: a3..a7 delivered at 103..107. With a 1000 ms TTL, at 1105 a3 and a4 are past it.
    assert reopened.prune(now_ms=1105) == 2
    assert not reopened.seen("crm:a4")
    assert reopened.count == 3
    reopened.close()


def test_the_example_endpoints_file_loads() -> None:
    example = Path(__file__).parents[2] / "examples" / "notify.yaml"
    env = {
        "LEADSCORE_SLACK_WEBHOOK_URL": "https://hooks.example/x",
        "LEADSCORE_CRM_WEBHOOK_SECRET": "k",
    }
    config = load_notify_config(example, env)
    assert [e.name for e in config.endpoints] == ["sales-slack", "crm-webhook"]
    assert config.endpoints[0].spec.rate_per_second == 1


def test_slack_message_for_an_account_names_it_and_its_contacts_to_reach() -> None:
    action = {
        "action_id": "acme:account_threshold_crossed:account_surge:0",
        "account_id": "acme<!channel>",
        "kind": "account_threshold_crossed",
        "name": "account_surge",
        "score": 160.0,
        "previous_score": 140.0,
        "stage": "surging",
        "previous_stage": "engaged",
        "top_contacts": [{"contact_id": "cto", "score": 50.0}, {"contact_id": "vp", "score": 40.0}],
    }
    text = json.loads(slack_body(action, None))["text"]
    assert text == (
        "Account *acme&lt;!channel&gt;* crossed *account_surge*: engagement 160 (was 140), "
        "stage engaged → surging. Contacts to reach: cto 50, vp 40."
    )
