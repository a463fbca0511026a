"""The lead query API's contract: id checks, bearer auth, one error shape, bodies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leadscore.api import (
    check_at,
    check_contact_id,
    check_limit,
    check_token,
    intelligence_body,
    lead_body,
)
from leadscore.config import Settings
from leadscore.errors import ApiError, ConfigError
from leadscore.scoring import EngagementEvent, apply_event, load_rules
from leadscore.scoring.events import json_schema_id_pattern
from leadscore.scoring.rules import MS_PER_DAY
from tests.contract import DOCUMENT

RULES = load_rules()
EXAMPLE_RULES = load_rules(Path(__file__).parents[2] / "examples" / "rules.yaml")
T0 = 1_762_000_000_000


@pytest.mark.parametrize(
    ("contact_id", "fragment"),
    [("", "empty"), ("x" * 257, "longer than 256"), ("a\x07b", "control"), ("a\u200bb", "control")],
)
def test_invalid_contact_ids_are_400(contact_id: str, fragment: str) -> None:
    with pytest.raises(ApiError) as info:
        check_contact_id(contact_id)
    assert info.value.status == 400
    assert info.value.body()["error"]["code"] == "invalid_contact_id"
    assert fragment in info.value.body()["error"]["message"]


def test_valid_ids_pass_unchanged() -> None:
    assert check_contact_id("ada@northwind.example") == "ada@northwind.example"
    assert check_contact_id("Zoë-42") == "Zoë-42"


@pytest.mark.parametrize("header", [None, "", "Bearer wrong", "Basic s3cret", "s3cret"])
def test_a_token_when_set_is_required(header: str | None) -> None:
    with pytest.raises(ApiError) as info:
        check_token("s3cret", header)
    assert (info.value.status, info.value.code) == (401, "unauthorized")


def test_the_right_token_or_no_token_setting_passes() -> None:
    check_token("s3cret", "Bearer s3cret")
    check_token("s3cret", "bearer s3cret")
    check_token(None, None)


def test_bodies_decay_the_score_to_now_and_explain_it() -> None:
    event = EngagementEvent(event_id="e1", contact_id="ada", type="signup", occurred_at=T0)
    record = apply_event(None, event, RULES, T0).record
    later = T0 + 30 * MS_PER_DAY  # one half-life
    lead = lead_body(record, RULES, later)
    assert (lead["score"], lead["current_score"], lead["stage"]) == (20.0, 10.0, "warm")
    intel = intelligence_body(record, RULES, later)
    assert intel["score"] == 10.0
    assert intel["reasons"] == [
        {"rule_id": "signup", "points": 10.0, "clipped": 0.0, "cap_id": None}
    ]
    assert intel["risk"] == "high"
    assert intel["next_action"] == "re_engage"


def _signed_up() -> object:
    event = EngagementEvent(event_id="e1", contact_id="ada", type="signup", occurred_at=T0)
    return apply_event(None, event, RULES, T0).record


def test_at_is_now_unless_given_and_never_before_the_latest_event() -> None:
    record = _signed_up()
    assert check_at(None, record, T0 + 5) == T0 + 5
    assert check_at(str(T0 + 7), record, T0) == T0 + 7
    assert check_at("2025-11-02T12:00:00+01:00", record, T0) == 1_762_081_200_000
    with pytest.raises(ApiError) as info:
        check_at(str(T0 - 1), record, T0)  # well-formed, but the state cannot answer: 409
    assert (info.value.status, info.value.code) == (409, "at_before_latest_event")
    assert "before the lead's latest event" in info.value.message
    for raw, fragment in [
        ("9000-01-01T00:00:00Z", "years 1000 to 8999"),  # outside the document's pattern
        ("yesterday", "ISO-8601"),
        ("2025-11-01T12:00:00", "UTC offset"),
        ("1" + "0" * 400, "ISO-8601"),  # a 500 before: int() of 401 digits, then overflow
        ("²", "ISO-8601"),
    ]:
        with pytest.raises(ApiError) as info:
            check_at(raw, record, T0)
        assert (info.value.status, info.value.code) == (400, "invalid_at")
        assert fragment in info.value.message


def test_limit_defaults_to_the_bound_and_stays_within_it() -> None:
    assert check_limit(None, 20) == 20
    assert check_limit("1", 20) == 1
    assert check_limit("20", 20) == 20
    assert check_limit("500", 20) == 20, "a larger limit gets what the lead keeps"
    # "²" passes str.isdigit(); 5,000 digits exceed int()'s limit: both were 500s.
    for raw in ["0", "1001", "-1", "2.5", "ten", "", "²", "٣", "9" * 5000]:
        with pytest.raises(ApiError) as info:
            check_limit(raw, 20)
        assert (info.value.status, info.value.code) == (400, "invalid_limit")


@pytest.mark.parametrize(
    "header", ["Bearer tökén", "Bearer \udcff", "Bearer " + "x" * 10_000, "Basic abc", ""]
)
def test_a_hostile_authorization_header_is_a_401(header: str) -> None:
    with pytest.raises(ApiError) as info:
        check_token("s3cret", header)
    assert info.value.status == 401
    check_token("s3cret", "Bearer s3cret")


def test_trait_values_leave_only_when_pii_is_allowed() -> None:
    identify = EngagementEvent(
        event_id="i1",
        contact_id="ada",
        type="identify",
        occurred_at=T0,
        properties={"seniority": "vp", "industry": "software", "country": "US"},
    )
    record = apply_event(None, identify, EXAMPLE_RULES, T0).record
    assert record.traits, "the example fit rules keep these traits"
    hidden = intelligence_body(record, EXAMPLE_RULES, T0)
    shown = intelligence_body(record, EXAMPLE_RULES, T0, expose_pii=True)
    assert "traits" not in hidden
    text = json.dumps(hidden) + json.dumps(lead_body(record, EXAMPLE_RULES, T0))
    for value in ("software", "vp", '"US"'):
        assert value not in text
    assert shown["traits"] == {"country": "US", "industry": "software", "seniority": "vp"}


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"web_host": "0.0.0.0"}, "LEADSCORE_WEB_HOST=0.0.0.0 is not a loopback address"),
        ({"web_host": "10.1.2.3"}, "LEADSCORE_API_TOKEN is not set"),
        ({"api_token": ""}, "LEADSCORE_API_TOKEN is empty"),
        ({"api_token": "  ", "web_host": "0.0.0.0"}, "LEADSCORE_API_TOKEN is empty"),
        ({"api_token": "tök"}, "printable ASCII"),
        ({"api_token": "a b"}, "printable ASCII"),
    ],
)
def test_the_api_fails_closed(settings: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        Settings(**settings).api_access()


def test_the_api_is_open_only_on_loopback_or_on_purpose_with_a_warning() -> None:
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        token, warning = Settings(web_host=host).api_access()
        assert token is None
        assert warning is not None
        assert "LEADSCORE_API_TOKEN is not set" in warning
    token, warning = Settings(web_host="0.0.0.0", api_auth="none").api_access()
    assert token is None
    assert warning is not None
    assert "LEADSCORE_API_AUTH=none" in warning
    assert Settings(web_host="0.0.0.0", api_token="s3cret").api_access() == ("s3cret", None)
    assert Settings(web_host="0.0.0.0", web_enabled=False).api_access()[0] is None


def test_the_openapi_document_declares_the_id_rule_the_api_enforces() -> None:
    for path, operations in DOCUMENT["paths"].items():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "contact_id":
                    assert parameter["schema"]["pattern"] == json_schema_id_pattern(), path
                    assert parameter["schema"]["maxLength"] == 256
