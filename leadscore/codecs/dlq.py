"""The dead-letter envelope: original key and bytes, headers saying why and where from."""

from __future__ import annotations

from leadscore.errors import InvalidEvent

HEADER_PREFIX = "leadscore."


def dlq_headers(
    error: InvalidEvent, topic: str, partition: int, offset: int, timestamp_ms: int | None
) -> list[tuple[str, bytes]]:
    """Headers for a dead-lettered record. The message never carries property values."""
    return [
        (HEADER_PREFIX + "error.reason", error.reason.encode()),
        (HEADER_PREFIX + "error.message", str(error).encode()[:1000]),
        (HEADER_PREFIX + "source.topic", topic.encode()),
        (HEADER_PREFIX + "source.partition", str(partition).encode()),
        (HEADER_PREFIX + "source.offset", str(offset).encode()),
        (HEADER_PREFIX + "source.timestamp", str(timestamp_ms or 0).encode()),
    ]
