"""EngagementEvent: the validated input record (schemas/engagement_event.avsc)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Event time must lie between 1970 and the year 9999: earlier or later is a producer bug.
MIN_EVENT_MS = 0
MAX_EVENT_MS = 253_402_300_799_999

NonEmpty = Annotated[str, Field(min_length=1, max_length=256)]


class EngagementEvent(BaseModel):
    """One engagement by one contact. Unknown fields are ignored; unknown types score 0."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=False)

    event_id: NonEmpty
    contact_id: NonEmpty
    type: Annotated[str, Field(min_length=1, max_length=100)]
    occurred_at: int = Field(
        ge=MIN_EVENT_MS, le=MAX_EVENT_MS, description="epoch milliseconds, UTC"
    )
    account_id: str | None = None
    anonymous_id: str | None = None
    source: str | None = None
    properties: dict[str, str] = Field(default_factory=dict)

    @field_validator("occurred_at", mode="before")
    @classmethod
    def _epoch_ms(cls, value: Any) -> Any:
        """Accept epoch milliseconds or an ISO-8601 string that carries its UTC offset."""
        if isinstance(value, datetime):
            return _datetime_ms(value)
        if isinstance(value, str):
            return iso_to_ms(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("expected epoch milliseconds (integer) or an ISO-8601 string")
        return value


def iso_to_ms(text: str) -> int:
    """Epoch milliseconds of an ISO-8601 timestamp that carries its UTC offset (or Z)."""
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(
            "expected epoch milliseconds or ISO-8601 with offset, e.g. 2026-11-23T09:00:00+01:00"
        ) from exc
    return _datetime_ms(parsed)


def _datetime_ms(value: datetime) -> int:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp has no UTC offset; add one (e.g. Z or +01:00)")
    return int(value.timestamp() * 1000)
