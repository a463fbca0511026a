"""Logging: key=value lines (logfmt), and contact ids never in clear (they may be emails).

Every line, leadscore's and the libraries' (Faust, mode, aiokafka), is one
logfmt record: ``ts=... level=... logger=... msg="..."`` followed by the
record's ``extra`` fields, rendered by structlog's ``LogfmtRenderer`` from the
standard library's records. A contact id is logged only as ``redact(id)``.
"""

from __future__ import annotations

import hashlib
import logging
import logging.config
from typing import Any

import structlog


def redact(contact_id: str | bytes | None) -> str:
    """A stable, non-reversible tag for a contact id, safe to log."""
    if contact_id is None:
        return "none"
    raw = contact_id if isinstance(contact_id, bytes) else contact_id.encode("utf-8")
    return "c#" + hashlib.blake2b(raw, digest_size=6).hexdigest()


def level_of(level: str) -> str:
    """The logging module's name for a level setting (``warn`` is ``WARNING``)."""
    upper = level.upper()
    return "WARNING" if upper == "WARN" else upper


def logging_config(level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for key=value lines on stderr (also given to Faust's
    worker, which would otherwise install its own format)."""
    formatter = {
        "()": structlog.stdlib.ProcessorFormatter,
        "foreign_pre_chain": [
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
        ],
        "processors": [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("msg"),
            structlog.processors.LogfmtRenderer(
                key_order=["ts", "level", "logger", "msg"], drop_missing=True
            ),
        ],
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"logfmt": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "logfmt",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level_of(level), "handlers": ["default"]},
    }


def setup_logging(level: str) -> None:
    logging.config.dictConfig(logging_config(level))
