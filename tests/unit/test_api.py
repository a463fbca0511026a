"""The lead query API's contract: id checks, bearer auth, one error shape, bodies."""

from __future__ import annotations

import pytest

from leadscore.api import ApiError, check_contact_id, check_token, intelligence_body, lead_body
from leadscore.scoring import EngagementEvent, apply_event, load_rules
from leadscore.scoring.rules import MS_PER_DAY

RULES = load_rules()
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
