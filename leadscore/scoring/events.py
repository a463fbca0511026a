"""EngagementEvent: the validated input record (schemas/engagement_event.avsc)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

# Event time must lie between 1970 and the year 9999: earlier or later is a producer bug.
MIN_EVENT_MS = 0
MAX_EVENT_MS = 253_402_300_799_999

MAX_ID_CHARS = 256  # contact, event, account and anonymous ids, and source
MAX_TYPE_CHARS = 100
MAX_PROPERTY_NAME_CHARS = 256

# Characters no identifier may hold: controls, format characters (bidi overrides such
# as U+202E, zero-width characters), line and paragraph separators and surrogates:
# Unicode 14's categories Cc, Cf, Zl, Zp and Cs. An id is printed by `leadscore tail`,
# sent to Slack and looked up through the API; these would rewrite a terminal line,
# reverse text, or make two ids look alike. The same class is declared in the API's
# OpenAPI document (leadscore/openapi.json).
FORBIDDEN_ID_RANGES = (
    (0x0000, 0x001F), (0x007F, 0x009F), (0x00AD, 0x00AD), (0x0600, 0x0605),
    (0x061C, 0x061C), (0x06DD, 0x06DD), (0x070F, 0x070F), (0x0890, 0x0891),
    (0x08E2, 0x08E2), (0x180E, 0x180E), (0x200B, 0x200F), (0x2028, 0x202E),
    (0x2060, 0x2064), (0x2066, 0x206F), (0xD800, 0xDFFF), (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB), (0x110BD, 0x110BD), (0x110CD, 0x110CD), (0x13430, 0x13438),
    (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0001, 0xE0001), (0xE0020, 0xE007F),
)  # fmt: skip


def _forbidden_class(char: Callable[[int], str], ranges: Iterable[tuple[int, int]]) -> str:
    """The body of a regex character class of ``ranges``, each code point written by ``char``."""
    return "".join(char(lo) if lo == hi else f"{char(lo)}-{char(hi)}" for lo, hi in ranges)


FORBIDDEN_ID_CLASS = _forbidden_class(
    lambda cp: f"\\u{cp:04x}" if cp <= 0xFFFF else f"\\U{cp:08x}", FORBIDDEN_ID_RANGES
)
ID_PATTERN = f"^[^{FORBIDDEN_ID_CLASS}]+$"


def json_schema_id_pattern() -> str:
    """ID_PATTERN for the OpenAPI document, in the syntax Python's re and ECMA-262 share.

    BMP code points are ``\\u`` escapes, the few astral ones the characters themselves
    (``\\U`` is Python's alone, ``\\u{...}`` ECMA's alone). The surrogate range is left
    out: a lone surrogate cannot be encoded in UTF-8, so no URL or JSON text has one.
    """
    ranges = [(lo, hi) for lo, hi in FORBIDDEN_ID_RANGES if lo != 0xD800]
    body = _forbidden_class(lambda cp: f"\\u{cp:04x}" if cp <= 0xFFFF else chr(cp), ranges)
    return f"^[^{body}]+$"


_FORBIDDEN = re.compile(f"[{FORBIDDEN_ID_CLASS}]")


def id_problem(text: str, max_chars: int = MAX_ID_CHARS) -> str | None:
    """Why ``text`` cannot be an identifier, or None when it can."""
    if not text:
        return "is empty"
    if len(text) > max_chars:
        return f"is longer than {max_chars} characters"
    found = _FORBIDDEN.search(text)
    if found:
        return f"contains the control or format character U+{ord(found.group()):04X}"
    return None


def visible(text: str) -> str:
    """``text`` with every control or format character written as an escape (``\\u202e``),
    for terminals and chat messages: nothing printed can move the cursor or reverse text."""
    return _FORBIDDEN.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _identifier(max_chars: int) -> Callable[[str], str]:
    """A pydantic validator: ``text`` if it can be an identifier, else ValueError saying why."""

    def check(text: str) -> str:
        problem = id_problem(text, max_chars)
        if problem:
            raise ValueError(problem)
        return text

    return check


_check_id = _identifier(MAX_ID_CHARS)


def _optional_identifier(text: str | None) -> str | None:
    """An optional id: absent or empty means none; otherwise the rules of ids hold."""
    return _check_id(text) if text else None


def _property_names(properties: dict[str, str]) -> dict[str, str]:
    for name in properties:
        if len(name) > MAX_PROPERTY_NAME_CHARS:
            raise ValueError(f"a property name is longer than {MAX_PROPERTY_NAME_CHARS} characters")
    return properties


NonEmpty = Annotated[str, AfterValidator(_check_id)]
OptionalId = Annotated[str | None, AfterValidator(_optional_identifier)]


class EngagementEvent(BaseModel):
    """One engagement by one contact. Unknown fields are ignored; unknown types score 0."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=False)

    event_id: NonEmpty
    contact_id: NonEmpty
    type: Annotated[str, AfterValidator(_identifier(MAX_TYPE_CHARS))]
    occurred_at: int = Field(
        ge=MIN_EVENT_MS, le=MAX_EVENT_MS, description="epoch milliseconds, UTC"
    )
    account_id: OptionalId = None
    anonymous_id: OptionalId = None
    source: OptionalId = None
    properties: Annotated[dict[str, str], AfterValidator(_property_names)] = Field(
        default_factory=dict
    )

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
