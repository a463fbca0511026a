"""Cost of identity and privacy in the step, per event, against plain scoring in the same run.

The step (``leadscore.step.batch.process``) over batches of 500 events, with the
lead records in a dict (the step's own cost: decode, look-ups, scoring, encoding;
no Kafka, no RocksDB), for:

- ``known lead``: events of contacts that have a lead (the baseline);
- ``known lead, privacy key``: the same with LEADSCORE_PRIVACY_KEY set (no extra
  look-up: a lead that exists cannot be suppressed);
- ``new lead`` and ``new lead, privacy key``: each event a contact's first, with the
  suppression-list look-up (a keyed hash and a read) when the key is set;
- ``merged id (both steps)``: events keyed by a contact merged into another: the
  stub's partition hands the event on, the survivor's partition scores it.

    python bench/identity_cost.py --leads 20000 --repeat 5

Prints a table and writes bench/results/<date>-identity-cost.{md,json}.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from typing import Any

import orjson
from common import progress, record_results, shown, spread

from leadscore.codecs.leads import encode_lead
from leadscore.codecs.outputs import encoder
from leadscore.config import Settings
from leadscore.scoring import EngagementEvent, Rules, apply_event, load_rules
from leadscore.scoring.merge import stub
from leadscore.step.batch import Encoders, Input, Limits, process
from leadscore.step.wheel import Timers
from leadscore.stream.partitioning import key_partition

PARTITIONS = 6
BATCH = 500
T0 = int(time.time() * 1000) - 3_600_000
RULES = load_rules()
_settings = Settings.from_variables({})
LIMITS = Limits(
    max_event_bytes=_settings.max_event_bytes,
    max_properties_bytes=_settings.max_properties_bytes,
    max_output_bytes=_settings.max_output_bytes,
    max_ahead_ms=300_000,
    partitions=PARTITIONS,
)
KEY = b"bench-privacy-key-0123456789"
ENCODERS = Encoders(
    action=encoder("LeadAction", "json"),
    change=encoder("ScoreChange", "json"),
    state=encoder("LeadState", "json"),
    topic_names={
        name: name
        for name in (
            "actions",
            "score_changes",
            "lead_state",
            "dlq",
            "handoff",
            "privacy",
            "receipts",
            "leads",
        )
    },
)


def event_input(n: int, contact: str, at: int) -> Input:
    body = {"event_id": f"b{n}", "contact_id": contact, "type": "page_view", "occurred_at": at}
    key = contact.encode()
    return Input("events", key_partition(key, PARTITIONS), n, key, orjson.dumps(body), at)


def stores(leads: int) -> dict[bytes, bytes]:
    """A lead for c0..cN (one signup each) and a stub a{i} merged into each."""
    stored: dict[bytes, bytes] = {}
    for i in range(leads):
        contact = f"c{i}"
        event = EngagementEvent(event_id=f"s{i}", contact_id=contact, type="signup", occurred_at=T0)
        record = apply_event(None, event, RULES, T0).record
        record.absorbed = {f"a{i}": T0}
        stored[contact.encode()] = encode_lead(record)
        stored[f"a{i}".encode()] = encode_lead(stub(None, f"a{i}", contact, RULES))
        progress("leads", i + 1, leads)
    return stored


def timed(
    records: list[Input], stored: dict[bytes, bytes], limits: Limits, rules: Rules = RULES
) -> tuple[float, Any]:
    """Seconds to process ``records`` in batches (writes applied), and the outputs."""
    timers = Timers(10_000)
    leads = dict(stored)
    outputs = []
    started = time.perf_counter()
    for i in range(0, len(records), BATCH):
        effects = process(
            records[i : i + BATCH], lambda _p, k: leads.get(k), timers, rules, T0, limits, ENCODERS
        )
        for key, (_partition, record) in effects.writes.items():
            if record is not None:
                leads[key] = encode_lead(record)
        outputs += effects.outputs
    return time.perf_counter() - started, outputs


def handed(outputs: list[Any]) -> list[Input]:
    return [
        Input(
            "handoff",
            key_partition(o.key, PARTITIONS),
            n,
            o.key,
            o.value,
            T0,
            handoff=True,
            headers=o.headers,
        )
        for n, o in enumerate(outputs)
        if o.destination == "handoff"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    stored = stores(args.leads)
    keyed = replace(LIMITS, privacy_key=KEY)
    n = args.leads
    known = [event_input(i, f"c{i}", T0 + 1 + i) for i in range(n)]
    new = [event_input(i, f"n{i}", T0 + 1 + i) for i in range(n)]
    merged = [event_input(i, f"a{i}", T0 + 1 + i) for i in range(n)]
    micros: dict[str, list[float]] = {k: [] for k in CASES}
    for r in range(args.repeat):
        micros["known lead"].append(timed(known, stored, LIMITS)[0] / n * 1e6)
        micros["known lead, privacy key"].append(timed(known, stored, keyed)[0] / n * 1e6)
        micros["new lead"].append(timed(new, stored, LIMITS)[0] / n * 1e6)
        micros["new lead, privacy key"].append(timed(new, stored, keyed)[0] / n * 1e6)
        first, outputs = timed(merged, stored, keyed)
        second, scored = timed(handed(outputs), stored, keyed)
        assert sum(1 for o in scored if o.destination == "score_changes") == n
        micros["merged id (both steps)"].append((first + second) / n * 1e6)
        progress("repeats", r + 1, args.repeat)
    base = statistics.median(micros["known lead"])
    figures = {
        "leads": n,
        "batch": BATCH,
        "repeat": args.repeat,
        "us_per_event": {k: spread(v) for k, v in micros.items()},
        "ratio_to_known_lead": {k: statistics.median(v) / base for k, v in micros.items()},
    }
    rows = [
        "| events on | µs per event (min / median / max) | vs known lead |",
        "|---|---|---|",
        *(
            f"| {k} | {shown(spread(v), '.1f')} | {statistics.median(v) / base:.2f}x |"
            for k, v in micros.items()
        ),
    ]
    record_results(
        "identity-cost",
        "The step's cost per event with identity and privacy",
        f"python bench/identity_cost.py --leads {n} --repeat {args.repeat}",
        figures,
        "\n".join(rows),
    )


CASES = (
    "known lead",
    "known lead, privacy key",
    "new lead",
    "new lead, privacy key",
    "merged id (both steps)",
)

if __name__ == "__main__":
    main()
