"""The OpenAPI document: valid, the routes the worker serves, and the bodies it builds."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
from openapi_spec_validator import validate

from leadscore.api import (
    CoolingQuery,
    ListQuery,
    check_cooling_query,
    check_list_query,
    check_within,
    cooling_body,
    history_body,
    intelligence_body,
    lead_body,
    list_body,
)
from leadscore.config import Settings
from leadscore.errors import ApiError
from leadscore.scoring import EngagementEvent, apply_event, load_rules
from leadscore.scoring.ranking import RankIndex
from leadscore.stream.app import build_app
from tests.contract import DOCUMENT, check, documented_paths

RULES = load_rules(Path(__file__).parents[2] / "examples" / "rules.yaml")
T0 = 1_762_000_000_000


def test_the_document_is_valid_openapi() -> None:
    validate(DOCUMENT)


def test_the_worker_serves_exactly_the_documented_paths() -> None:
    app = build_app(Settings(web_enabled=True), RULES, partitions=3)
    web = app.web
    web.blueprints.apply(web)  # what the worker does when its web server starts
    served = {r.resource.canonical for r in web.web_app.router.routes() if r.method == "GET"}
    assert served == documented_paths()
    assert {r.method for r in web.web_app.router.routes()} == {"GET", "HEAD"}


def _lead():
    events = [
        EngagementEvent(
            event_id="i1",
            contact_id="ada",
            type="identify",
            occurred_at=T0,
            properties={"seniority": "vp", "company_size": "800"},
        ),
        EngagementEvent(event_id="e1", contact_id="ada", type="demo_request", occurred_at=T0 + 1),
    ]
    record, changes = None, []
    for event in events:
        applied = apply_event(record, event, RULES, T0 + 5)
        record = applied.record
        changes.insert(0, applied.change.to_dict())
    return record, changes


def test_the_bodies_match_their_schemas() -> None:
    record, changes = _lead()
    check(lead_body(record, RULES, T0 + 10), "LeadState")
    check(intelligence_body(record, RULES, T0 + 10), "Intelligence")
    check(intelligence_body(record, RULES, T0 + 10, expose_pii=True), "Intelligence")
    check(history_body(record, changes, 20), "History")
    for error in [
        ApiError(404, "not_found", "no lead with this contact id"),
        ApiError(503, "unavailable", "rebalancing", retry_after=5),
    ]:
        check(error.body(), "Error")


def test_the_schemas_are_strict_enough_to_catch_a_drift() -> None:
    record, _ = _lead()
    body = lead_body(record, RULES, T0 + 10)
    with pytest.raises(jsonschema.ValidationError):
        check({**body, "undocumented": 1}, "LeadState")
    with pytest.raises(jsonschema.ValidationError):
        check({k: v for k, v in body.items() if k != "stage"}, "LeadState")
    with pytest.raises(jsonschema.ValidationError):
        check({"error": "a string, as Faust's own errors have"}, "Error")


def test_the_list_bodies_match_their_schemas() -> None:
    record, _ = _lead()
    index = RankIndex(RULES)
    index.put(0, record.contact_id, record)
    listed = index.top([0], T0 + 10, 5)
    assert [x.contact_id for x in listed] == ["ada"]
    check(list_body(listed, T0 + 10, [0]), "LeadList")
    cooling = index.cooling([0], T0 + 10, 90 * 86_400_000, 5)
    check(cooling_body(cooling, T0 + 10, 90 * 86_400_000, [0], RULES), "CoolingList")
    check(list_body([], T0, [0, 1, 2]), "LeadList")


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"sort": "name"}, "invalid_sort"),
        ({"limit": "0"}, "invalid_limit"),
        ({"limit": "1001"}, "invalid_limit"),
        ({"stage": "lukewarm"}, "invalid_stage"),
        ({"min_score": "1e3"}, "invalid_min_score"),
        ({"min_score": "nan"}, "invalid_min_score"),
        ({"account_id": "a\x00b"}, "invalid_account_id"),
    ],
)
def test_a_list_query_names_the_wrong_parameter(query: dict[str, str], code: str) -> None:
    with pytest.raises(ApiError) as raised:
        check_list_query(query, RULES)
    assert (raised.value.status, raised.value.code) == (400, code)


def test_a_list_query_has_defaults_and_reads_its_filters() -> None:
    assert check_list_query({}, RULES) == ListQuery(20, None, None, None)
    stage = RULES.stages[-1].name
    asked = {"sort": "score", "limit": "7", "stage": stage, "min_score": "-2.5", "account_id": "a1"}
    assert check_list_query(asked, RULES) == ListQuery(7, stage, -2.5, "a1")


@pytest.mark.parametrize(
    ("raw", "ms"), [(None, 86_400_000), ("90m", 5_400_000), ("7d", 604_800_000), ("0s", 0)]
)
def test_a_cooling_window_is_a_duration(raw: str | None, ms: int) -> None:
    assert check_within(raw) == ms


@pytest.mark.parametrize("raw", ["1y", "24", "1234567d", "-1h", "1.5h", "24 h"])
def test_a_cooling_window_that_is_no_duration_is_refused(raw: str) -> None:
    with pytest.raises(ApiError) as raised:
        check_within(raw)
    assert raised.value.code == "invalid_within"


def test_a_cooling_query_has_defaults_and_the_list_limit_bound() -> None:
    assert check_cooling_query({}) == CoolingQuery(86_400_000, 100)
    assert check_cooling_query({"within": "7d", "limit": "5"}) == CoolingQuery(604_800_000, 5)
    with pytest.raises(ApiError) as raised:
        check_cooling_query({"limit": "1001"})
    assert raised.value.code == "invalid_limit"
