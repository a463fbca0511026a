"""Tying the local RocksDB directory to the Kafka cluster and app that own its changelog.

Faust's stores remember changelog offsets. Pointed at another cluster, or at
one whose topics were recreated, they claim offsets the changelog never had
and recovery stops with a ConsistencyError. The state is only a cache of the
changelog, so state that belongs elsewhere is cleared and rebuilt. Only
Faust's own table directories (``v1``, ``v2``, ...) are ever removed; a
directory holding anything else is refused, never emptied.

A worker that did not stop cleanly (SIGKILL, a crash, a full disk) leaves
RocksDB holding writes whose changelog records, outputs and input offsets may
never have reached Kafka: a replayed event would then be taken for a duplicate
and its actions never sent. ``RUNNING.json`` is written at start and removed
only after a clean stop; found at start, it means the local tables are
discarded and rebuilt from the changelog, which holds only what Kafka has
(under exactly_once, only committed transactions).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from pathlib import Path

from leadscore.errors import ConfigError

log = logging.getLogger("leadscore.state")

OWNER_FILE = "OWNER.json"
RULES_FILE = "RULES.json"
RUNNING_FILE = "RUNNING.json"
OURS = {OWNER_FILE, RULES_FILE, RUNNING_FILE}
FAUST_TABLE_DIR = re.compile(r"^v\d+$")


def claim_state_dir(data_dir: Path, cluster_id: str, app_id: str, events_topic: str) -> bool:
    """Make ``data_dir`` ours; returns True when foreign state was cleared."""
    owner = {"cluster_id": cluster_id, "app_id": app_id, "events_topic": events_topic}
    marker = data_dir / OWNER_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    others = [p for p in data_dir.iterdir() if p.name not in OURS]
    strangers = sorted(p.name for p in others if not FAUST_TABLE_DIR.match(p.name))
    if strangers:
        raise ConfigError(
            f"LEADSCORE_DATA_DIR={data_dir} holds files leadscore did not write "
            f"({', '.join(strangers[:5])}); point it at an empty or leadscore-only directory"
        )
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = None
    cleared = False
    if others and recorded != owner:
        log.warning(
            "state in %s belongs to %s, not %s; clearing it, tables are rebuilt from the changelog",
            data_dir,
            recorded or "an unknown owner",
            owner,
        )
        for table_dir in others:
            shutil.rmtree(table_dir)
        cleared = True
    marker.write_text(json.dumps(owner), encoding="utf-8")
    return cleared


def begin_run(data_dir: Path) -> bool:
    """Mark ``data_dir`` in use; True when the last run had not stopped cleanly and
    its tables were discarded (they are rebuilt from the changelog)."""
    marker = data_dir / RUNNING_FILE
    discarded = False
    if marker.exists():
        tables = [p for p in data_dir.iterdir() if FAUST_TABLE_DIR.match(p.name)]
        if tables:
            log.warning(
                "the last worker on %s did not stop cleanly (killed or crashed): its local "
                "state may hold writes Kafka never got; discarding it, tables are rebuilt "
                "from the changelog",
                data_dir,
            )
            for table_dir in tables:
                shutil.rmtree(table_dir)
            discarded = True
    marker.write_text(json.dumps({"pid": os.getpid(), "started": time.time()}), encoding="utf-8")
    return discarded


def end_run(data_dir: Path) -> None:
    """After a clean stop: the tables were closed with every write committed."""
    (data_dir / RUNNING_FILE).unlink(missing_ok=True)


def note_rules(data_dir: Path, version: str, digest: str) -> dict[str, str] | None:
    """Record the rules this worker starts with; return the ones recorded before (if any)."""
    marker = data_dir / RULES_FILE
    try:
        previous = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        previous = None
    data_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"version": version, "digest": digest}), encoding="utf-8")
    return previous if isinstance(previous, dict) else None


def log_rules_change(previous: dict[str, str] | None, version: str, digest: str) -> None:
    """Say what a change of rules means for the scores already kept."""
    if previous is None:
        log.info("rules %s (digest %s)", version, digest)
    elif previous.get("version") != version:
        log.warning(
            "rules changed from %s to %s: new events are scored with %s; existing scores, "
            "stages and fired thresholds are kept as they are (history is not re-scored)",
            previous.get("version"),
            version,
            version,
        )
    elif previous.get("digest") != digest:
        log.warning(
            "rules file content changed but its version is still %s: give changed rules a new "
            "version, so lead states and actions say which rules produced them",
            version,
        )
    else:
        log.info("rules %s unchanged since the last start", version)
