"""A real Prometheus server (Debian's ``prometheus``) scraping what a test or bench runs."""

from __future__ import annotations

from pathlib import Path

from tests.support.deadlines import HTTP_READY_S
from tests.support.http import free_port, wait_http
from tests.support.processes import Process


def start_prometheus(binary: str, config: Path, root: Path) -> tuple[Process, str]:
    """Prometheus with ``config``, its data and log under ``root``, ready; it and its URL."""
    port = free_port()
    server = Process(
        "prometheus",
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={root / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        {},
        root / "prometheus.log",
        ready_line=None,
    ).launch()
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/-/ready", HTTP_READY_S, server.alive)
    return server, base
