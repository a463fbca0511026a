"""Log lines are key=value (logfmt), library lines included, and ids go through redact()."""

from __future__ import annotations

import logging
import shlex
from collections.abc import Iterator

import pytest

from leadscore.logs import logging_config, redact, setup_logging


@pytest.fixture(autouse=True)
def root_logger_restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def fields(line: str) -> dict[str, str]:
    """A logfmt line's fields (values quoted as the renderer quotes them)."""
    return dict(part.split("=", 1) for part in shlex.split(line, posix=True))


def test_every_line_is_key_value_with_time_level_logger_and_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging("info")
    logging.getLogger("leadscore.stream.app").warning(
        'partition %s[%d] "held" for %s s', "events", 3, 30, extra={"partition": 3}
    )
    logging.getLogger("faust.worker").info("[^Worker]: Ready")
    logging.getLogger("leadscore.quiet").debug("not at info")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    first, second = (fields(line) for line in lines)
    assert list(first)[:4] == ["ts", "level", "logger", "msg"]
    assert first["level"] == "warning"
    assert first["logger"] == "leadscore.stream.app"
    assert first["msg"] == 'partition events[3] "held" for 30 s'
    assert first["partition"] == "3"
    assert second["logger"] == "faust.worker"
    assert second["msg"] == "[^Worker]: Ready"


def test_a_traceback_stays_on_its_line(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("info")
    try:
        raise ZeroDivisionError("boom")
    except ZeroDivisionError:
        logging.getLogger("leadscore").exception("failed")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert "ZeroDivisionError: boom" in fields(lines[0])["exception"]


def test_warn_is_the_warning_level() -> None:
    assert logging_config("warn")["root"]["level"] == "WARNING"


def test_a_redacted_id_is_stable_and_does_not_show_the_id() -> None:
    assert redact("ada@example.com") == redact(b"ada@example.com")
    assert "ada" not in redact("ada@example.com")
    assert redact(None) == "none"
