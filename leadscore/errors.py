"""The exception hierarchy: everything leadscore raises on purpose is a LeadscoreError.

The one exception: validators of pydantic models (settings, rules, sink files)
raise ``ValueError``, as pydantic requires; pydantic collects them, and
``load_settings``, ``load_rules`` and the sink file loaders raise them as a
``ConfigError`` or ``RulesError`` with every problem's location.
"""

from __future__ import annotations

from typing import Any


class LeadscoreError(Exception):
    """Root of every error leadscore raises on purpose."""


class ConfigError(LeadscoreError):
    """A setting is missing or invalid."""


class RulesError(LeadscoreError):
    """A rules file cannot be used; ``problems`` lists each one with its file and line."""

    def __init__(self, source: str, problems: list[RuleProblem]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s) in the rules:\n{lines}")


class RuleProblem:
    """One problem in a rules file: where it is and what to do about it."""

    __slots__ = ("line", "location", "message", "source")

    def __init__(self, source: str, line: int | None, location: str, message: str) -> None:
        self.source = source
        self.line = line
        self.location = location
        self.message = message

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        at = f" ({self.location})" if self.location else ""
        return f"{where}{at}: {self.message}"


class InvalidRecord(LeadscoreError):
    """A record that cannot be used; it goes to a dead-letter topic with ``reason``."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class InvalidEvent(InvalidRecord):
    """An input record cannot be scored; it goes to the dead-letter topic with ``reason``."""


class InvalidAction(InvalidRecord):
    """A record on the actions topic a sink cannot act on; it goes to the sink DLQ."""


class BrokerUnavailable(LeadscoreError):
    """The Kafka cluster did not answer in time."""


class TopicsMissing(LeadscoreError):
    """Topics the worker needs do not exist; `leadscore topics create` makes them."""


class OutputNotDelivered(LeadscoreError):
    """An output record was not delivered: the changelog records after it are held back."""


class ChangelogUnsent(LeadscoreError):
    """The producer stopped with changelog records still queued: offsets cannot be committed."""


class UntestedVersions(LeadscoreError):
    """A library the worker customises is installed at a version it was not tested with."""


class UnreadableLead(LeadscoreError):
    """A stored lead record in no encoding this version reads (written by a newer one)."""


class HistoryUnavailable(LeadscoreError):
    """The score-changes topic did not answer a history read in time."""


class ApiError(LeadscoreError):
    """An answer other than 200: HTTP status, a stable code and a message for people."""

    def __init__(
        self, status: int, code: str, message: str, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


class DeliveryError(LeadscoreError):
    """One attempt at a delivery failed; ``retryable`` says whether another may succeed."""

    def __init__(self, message: str, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class NotAcknowledged(LeadscoreError):
    """The broker refused a record after the producer's own retries (a sink stops)."""


class TopicUnreadable(LeadscoreError):
    """A topic could not be read to its end (the consumer reported an error)."""


class UnpositionedMessage(LeadscoreError):
    """A consumed message without a partition or offset: an error event, not a record."""
