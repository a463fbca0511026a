"""Logging: key=value lines, and contact ids never in clear (they may be emails)."""

from __future__ import annotations

import hashlib
import logging

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def redact(contact_id: str | bytes | None) -> str:
    """A stable, non-reversible tag for a contact id, safe to log."""
    if contact_id is None:
        return "none"
    raw = contact_id if isinstance(contact_id, bytes) else contact_id.encode("utf-8")
    return "c#" + hashlib.blake2b(raw, digest_size=6).hexdigest()


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper().replace("WARN", "WARNING"), format=LOG_FORMAT)
