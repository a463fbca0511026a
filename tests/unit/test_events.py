"""EngagementEvent validation: timestamps in either form, clear errors otherwise."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from leadscore.scoring import EngagementEvent

BASE = {"event_id": "e1", "contact_id": "c1", "type": "page_view"}


@pytest.mark.parametrize(
    "when",
    [1_763_888_400_000, "2025-11-23T09:00:00Z", "2025-11-23T10:00:00+01:00"],
)
def test_occurred_at_accepts_epoch_ms_and_iso_with_offset(when: object) -> None:
    assert (
        EngagementEvent.model_validate({**BASE, "occurred_at": when}).occurred_at
        == 1_763_888_400_000
    )


@pytest.mark.parametrize(
    ("when", "fragment"),
    [
        ("2025-11-23T09:00:00", "no UTC offset"),
        ("yesterday", "ISO-8601"),
        (-5, "greater than or equal to 0"),
        (True, "epoch milliseconds"),
    ],
)
def test_bad_timestamps_are_rejected_with_a_reason(when: object, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        EngagementEvent.model_validate({**BASE, "occurred_at": when})


def test_missing_contact_is_rejected() -> None:
    with pytest.raises(ValidationError, match="contact_id"):
        EngagementEvent.model_validate({"event_id": "e", "type": "x", "occurred_at": 1})
