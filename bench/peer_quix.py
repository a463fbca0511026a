"""The peer: leadscore's default rules as a Quix Streams application.

    .venv-peer/bin/python bench/peer_quix.py BOOTSTRAP GROUP STATE_DIR EVENTS LEAD_STATE \
        SCORE_CHANGES ACTIONS GUARANTEE

GUARANTEE is ``at-least-once`` (Quix Streams' default) or ``exactly-once``.
Written the way Quix Streams' documentation shows a stateful app: one
``Application`` (its defaults otherwise), a ``StreamingDataFrame`` with a
stateful ``apply`` (RocksDB state with a changelog topic) and ``to_topic``
branches. The per-event work is leadscore's own: the same decoder and the same
pure scoring core with the default rules, so the comparison is the framework,
not the rules. It writes what leadscore writes per event (the lead snapshot,
the audit record, the actions) as JSON; it has no timer wheel, score history
or census, which leadscore keeps in memory (wheel, census) and as offsets of the
audit records in each lead record (history).

Runs in its own virtualenv (``make peer-venv``): Quix Streams 3.28 pins
confluent-kafka below 2.13, leadscore's own pin starts at 2.16.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from quixstreams import Application, State

from leadscore.codecs.events import decode_event
from leadscore.errors import InvalidEvent
from leadscore.scoring import LeadRecord, apply_event, load_rules, snapshot

RULES = load_rules(None)
# leadscore's defaults (LEADSCORE_MAX_EVENT_BYTES, _MAX_PROPERTIES_BYTES and
# _MAX_CLOCK_SKEW_SECONDS), so both systems check each event alike.
MAX_EVENT_BYTES = 262_144
MAX_PROPERTIES_BYTES = 65_536
MAX_AHEAD_MS = 300_000


def score(value: bytes, key: bytes, timestamp: int, headers: Any, state: State) -> Any:
    try:
        event = decode_event(key, value, MAX_EVENT_BYTES, MAX_PROPERTIES_BYTES)
    except InvalidEvent:
        return None
    stored = state.get("lead")
    record = LeadRecord.from_dict(stored) if stored is not None else None
    now = time.time_ns() // 1_000_000
    applied = apply_event(record, event, RULES, now, MAX_AHEAD_MS)
    if applied.status != "scored":
        return None
    state.set("lead", applied.record.to_dict())
    return {
        "state": snapshot(applied.record, RULES, now).to_dict(),
        "change": applied.change.to_dict() if applied.change is not None else None,
        "actions": [action.to_dict() for action in applied.actions],
    }


def main() -> None:
    bootstrap, group, state_dir, events, lead_state, changes, actions, guarantee = sys.argv[1:9]
    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        state_dir=state_dir,
        loglevel="WARNING",
        processing_guarantee=guarantee,
    )
    sdf = app.dataframe(app.topic(events, value_deserializer="bytes"))
    scored = sdf.apply(score, stateful=True, metadata=True).filter(lambda v: v is not None)
    scored.apply(lambda v: v["state"]).to_topic(app.topic(lead_state))
    scored.filter(lambda v: v["change"] is not None).apply(lambda v: v["change"]).to_topic(
        app.topic(changes)
    )
    scored.apply(lambda v: v["actions"], expand=True).to_topic(app.topic(actions))
    app.run()


if __name__ == "__main__":
    main()
