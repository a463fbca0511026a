"""Records that used to stop a worker (issue 19): each is refused with a reason or scored.

Oversized optional fields, control and bidi characters in ids, a regex condition
that backtracks catastrophically, an event dated a year ahead and a lead such an
event froze before the check existed.
"""

from __future__ import annotations

import re

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from leadscore.api import check_contact_id
from leadscore.codecs.events import decode_event
from leadscore.config import Settings
from leadscore.errors import ApiError, InvalidEvent
from leadscore.scoring import EngagementEvent, apply_event, load_rules, parse_rules
from leadscore.scoring.engine import MAX_TRAIT_CHARS
from leadscore.scoring.events import ID_PATTERN, id_problem, json_schema_id_pattern, visible
from leadscore.scoring.rules import MS_PER_DAY

RULES = load_rules()
NOW = 1_763_888_400_000
SKEW_MS = 300_000
LIMITS = (Settings().max_event_bytes, Settings().max_properties_bytes)


BASE = """
version: poison
stages: [{name: cold, min_score: 0}, {name: hot, min_score: 31}]
"""


def rules_with(text: str, source: str = "poison.yaml"):
    return parse_rules(BASE + text, source)


def decode(body: dict[str, object], key: bytes | None = None) -> EngagementEvent:
    contact = body.get("contact_id")
    if key is None and isinstance(contact, str):
        key = contact.encode("utf-8", "surrogatepass")
    return decode_event(key, orjson.dumps(body), *LIMITS)


def good(**fields: object) -> dict[str, object]:
    return {
        "event_id": "e1",
        "contact_id": "ada",
        "type": "page_view",
        "occurred_at": NOW,
        **fields,
    }


@pytest.mark.parametrize("field", ["account_id", "anonymous_id", "source"])
def test_an_oversized_optional_field_is_a_schema_violation_naming_it(field: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode(good(**{field: "x" * 257}))
    assert caught.value.reason == "schema_violation"
    assert field in str(caught.value)
    assert decode(good(**{field: "x" * 256})).model_dump()[field] == "x" * 256


def test_a_huge_account_id_is_refused_before_it_can_make_an_oversized_output() -> None:
    """The record of issue 19's finding 1: 999,900 bytes, most of them the account id."""
    body = orjson.dumps(good(account_id="a" * 999_700))
    with pytest.raises(InvalidEvent) as caught:
        decode_event(b"ada", body, *LIMITS)
    assert caught.value.reason == "too_large"  # the default limit is well under the producer's
    with pytest.raises(InvalidEvent) as caught:
        decode_event(b"ada", body, 1_000_000, LIMITS[1])
    assert caught.value.reason == "schema_violation"


def test_the_default_input_limit_leaves_room_under_the_producer_limit() -> None:
    settings = Settings()
    assert settings.max_event_bytes <= 300_000
    assert settings.max_output_bytes < 1_000_000
    with pytest.raises(ValueError, match="max_event_bytes"):
        Settings(max_event_bytes=1_000_000)


@pytest.mark.parametrize(
    ("contact", "character"),
    [("ada\x1b[2J", "U+001B"), ("ada\u202egnp.exe", "U+202E"), ("a\u200bda", "U+200B")],
)
def test_control_and_format_characters_in_a_contact_id_are_a_schema_violation(
    contact: str, character: str
) -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode(good(contact_id=contact))
    assert caught.value.reason == "schema_violation"
    assert character in str(caught.value)


@given(st.text(min_size=1, max_size=300))
def test_the_decoder_and_the_api_accept_the_same_contact_ids(contact: str) -> None:
    try:
        decode(good(contact_id=contact))
        decoded = True
    except InvalidEvent:
        decoded = False
    try:
        check_contact_id(contact)
        served = True
    except ApiError:
        served = False
    assert decoded == served == (id_problem(contact) is None)


@given(st.text(min_size=1, max_size=40))
def test_the_id_patterns_are_the_rule_the_code_applies(text: str) -> None:
    """ID_PATTERN, and the OpenAPI document's ECMA form of it read the way Python reads it."""
    ecma = re.sub(
        r"\\u\{([0-9a-f]+)\}", lambda m: f"\\U{int(m[1], 16):08x}", json_schema_id_pattern()
    )
    accepted = id_problem(text) is None
    assert (re.fullmatch(ID_PATTERN, text) is not None) == accepted
    assert (re.fullmatch(ecma, text) is not None) == accepted


def test_a_backtracking_regex_runs_in_linear_time_on_a_hostile_value() -> None:
    """With Python's re this value takes about 1.1 s at 25 characters and 4x per two more:
    at 60,000 the test would hang until pytest-timeout stops it."""
    rules = rules_with(
        """
rules:
  - id: corp-signup
    event_type: signup
    points: 20
    when: [{property: email, regex: '^([a-z0-9]+\\.?)+@corp\\.com$'}]
"""
    )
    hostile = EngagementEvent(
        event_id="h",
        contact_id="c",
        type="signup",
        occurred_at=NOW,
        properties={"email": "a" * 60_000 + "!"},
    )
    fine = hostile.model_copy(update={"event_id": "f", "properties": {"email": "Ada.L@corp.com"}})
    assert apply_event(None, hostile, rules, NOW).record.score == 0.0
    assert apply_event(None, fine, rules, NOW).record.score == 20.0


@pytest.mark.parametrize("pattern", [r"(a)\1", r"(?=a)b", r"(?<!x)y"])
def test_a_regex_the_linear_engine_cannot_run_is_refused_when_the_rules_load(pattern: str) -> None:
    text = f"""
rules:
  - id: r
    event_type: signup
    points: 1
    when: [{{property: email, regex: '{pattern}'}}]
"""
    with pytest.raises(Exception, match="not valid for RE2") as caught:
        rules_with(text, "bad.yaml")
    assert "bad.yaml" in str(caught.value)


def event(i: int, kind: str, at: int, **properties: str) -> EngagementEvent:
    return EngagementEvent(
        event_id=f"e{i}", contact_id="c", type=kind, occurred_at=at, properties=properties
    )


def test_an_event_dated_beyond_the_clock_skew_is_refused_from_the_future() -> None:
    record = apply_event(None, event(1, "signup", NOW - 1000), RULES, NOW, SKEW_MS).record
    ahead = apply_event(record, event(2, "demo_request", NOW + SKEW_MS + 1), RULES, NOW, SKEW_MS)
    assert ahead.status == "from_future"
    assert ahead.record is record
    within = apply_event(record, event(3, "demo_request", NOW + SKEW_MS), RULES, NOW, SKEW_MS)
    assert within.status == "scored"
    year_ahead = event(4, "signup", NOW + 365 * MS_PER_DAY)
    assert apply_event(None, year_ahead, RULES, NOW, SKEW_MS).status == "from_future"


def test_a_lead_frozen_by_a_future_event_is_set_back_at_its_next_event() -> None:
    """A lead scored before the check existed: a year-ahead event froze its clock."""
    year = 365 * MS_PER_DAY
    record = apply_event(None, event(1, "signup", NOW - 1000), RULES, NOW).record
    frozen = apply_event(record, event(2, "demo_request", NOW + year), RULES, NOW).record
    assert apply_event(frozen, event(3, "page_view", NOW + 5000), RULES, NOW + 5000).status == (
        "too_late"
    )

    later = NOW + 60_000
    repaired = apply_event(frozen, event(3, "page_view", later - 10), RULES, later, SKEW_MS)
    assert repaired.status == "scored"
    assert repaired.rewound
    lead = repaired.record
    assert lead.ref_ms == later
    # The year-ahead demo request keeps its 30 points once; the signup kept the decay a
    # year gave it (about 0.0004); the page view adds its point.
    assert lead.score == pytest.approx(frozen.score + 1.0, abs=0.01)
    assert 31.0 <= lead.score < 31.01
    assert max(lead.seen.values()) <= later
    # From here the lead decays and takes events as any other.
    after = apply_event(lead, event(4, "email_open", later + MS_PER_DAY), RULES, later + MS_PER_DAY)
    assert after.status == "scored"
    assert not after.rewound
    # An event from before the freeze's processing time cannot be checked for duplicates.
    assert apply_event(lead, event(1, "signup", NOW - 1000), RULES, later, SKEW_MS).status == (
        "too_late"
    )


def test_a_re_qualification_stays_later_than_the_disqualification_after_a_rewind() -> None:
    rules = rules_with(
        """
rules: []
disqualify: [{id: competitor, event_type: disqualify}]
requalify: [{id: back, event_type: requalify}]
"""
    )
    year = 365 * MS_PER_DAY
    record = apply_event(None, event(1, "disqualify", NOW + year), rules, NOW).record
    record = apply_event(record, event(2, "requalify", NOW + year + 5), rules, NOW).record
    assert not record.disqualified
    repaired = apply_event(record, event(3, "page_view", NOW), rules, NOW, SKEW_MS)
    assert repaired.rewound
    assert not repaired.record.disqualified


def test_a_trait_keeps_only_the_start_of_a_huge_value() -> None:
    rules = rules_with(
        """
rules: []
fit:
  event_types: [identify]
  rules:
    - {id: vp, when: [{property: title, prefix: vp}], points: 30}
  grades: [{name: D, min_fit: 0}, {name: A, min_fit: 30}]
"""
    )
    huge = "VP " + "x" * 60_000
    record = apply_event(None, event(1, "identify", NOW, title=huge), rules, NOW).record
    assert record.traits["title"][1] == huge[:MAX_TRAIT_CHARS]
    assert record.fit == 30.0


@given(st.text(max_size=60))
def test_visible_text_has_no_control_or_format_character_and_hides_nothing(text: str) -> None:
    """What `leadscore tail` prints and Slack messages carry (issue 19, finding 4)."""
    shown = visible(text)
    assert id_problem(shown, max_chars=10**6) in (None, "is empty")
    if id_problem(text) is None:
        assert shown == text
    assert visible("ada\x1b[2J\u202egnp") == "ada\\u001b[2J\\u202egnp"
