"""Cost of accounts per scored event, against the same step with accounts off, in one run.

The lead step (``leadscore.step.batch.process``) over batches of 500 events of
contacts that have a lead, each in one of ``--accounts`` accounts, with the
lead records in a dict (the step's own cost; no Kafka, no RocksDB):

- ``lead step, accounts off``: the rules without account stages (the baseline);
- ``lead step, accounts on``: the same events, now also sending each account the
  contact's share (one more output per scored event);
- ``account step``: the account agent's step (``leadscore.step.accounts``) over
  those shares, with the account records and members' shares in a dict;
- ``accounts in all``: the two extra costs together, per scored event.

    python bench/account_cost.py --leads 20000 --accounts 1000 --repeat 5

Prints a table and writes bench/results/<date>-account-cost.{md,json}.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import orjson
from common import progress, record_results, shown, spread
from identity_cost import LIMITS, PARTITIONS, T0, timed

from leadscore.codecs.accounts import encode_entry
from leadscore.codecs.leads import encode_lead
from leadscore.codecs.outputs import encoder
from leadscore.scoring import EngagementEvent, Rules, apply_event, load_rules
from leadscore.scoring.rules import Accounts
from leadscore.step.accounts import process_accounts
from leadscore.step.batch import Input
from leadscore.step.wheel import Timers
from leadscore.stream.partitioning import key_partition

BATCH = 500
RULES = load_rules()
NO_ACCOUNTS = RULES.model_copy(update={"accounts": Accounts()})
STATE = encoder("AccountState", "json")
ACTION = encoder("AccountAction", "json")


def account_of(i: int, accounts: int) -> str:
    return f"org-{i % accounts}"


def event_input(n: int, contact: str, account: str, at: int) -> Input:
    body = {
        "event_id": f"b{n}",
        "contact_id": contact,
        "account_id": account,
        "type": "page_view",
        "occurred_at": at,
    }
    key = contact.encode()
    return Input("events", key_partition(key, PARTITIONS), n, key, orjson.dumps(body), at)


def stores(leads: int, accounts: int) -> dict[bytes, bytes]:
    """A lead for c0..cN (one signup each, in its account)."""
    stored: dict[bytes, bytes] = {}
    for i in range(leads):
        contact = f"c{i}"
        event = EngagementEvent(
            event_id=f"s{i}",
            contact_id=contact,
            account_id=account_of(i, accounts),
            type="signup",
            occurred_at=T0,
        )
        stored[contact.encode()] = encode_lead(apply_event(None, event, RULES, T0).record)
        progress("leads", i + 1, leads)
    return stored


def lead_step(
    records: list[Input], stored: dict[bytes, bytes], rules: Rules
) -> tuple[float, list[Any]]:
    """Seconds to process ``records`` in batches (writes applied); the account updates."""
    seconds, outputs = timed(records, stored, LIMITS, rules)
    return seconds, [o for o in outputs if o.destination == "account_updates"]


def account_step(updates: list[Any], table: dict[bytes, bytes]) -> float:
    """Seconds for the account agent's step over the shares, in batches."""
    records = [
        Input("account-updates", key_partition(u.key, PARTITIONS), n, u.key, u.value, T0)
        for n, u in enumerate(updates)
    ]
    timers = Timers(10_000)
    started = time.perf_counter()
    for i in range(0, len(records), BATCH):
        effects = process_accounts(
            records[i : i + BATCH], lambda _p, k: table.get(k), timers, RULES, T0, STATE, ACTION
        )
        for key, (_partition, value) in effects.writes.items():
            if value is not None:
                table[key] = encode_entry(value)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--accounts", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    n = args.leads
    stored = stores(n, args.accounts)
    events = [event_input(i, f"c{i}", account_of(i, args.accounts), T0 + 1 + i) for i in range(n)]
    # the accounts as the leads' first events left them
    _, seeded = lead_step(
        [event_input(i, f"c{i}", account_of(i, args.accounts), T0) for i in range(n)], {}, RULES
    )
    base_table: dict[bytes, bytes] = {}
    account_step(seeded, base_table)
    micros: dict[str, list[float]] = {k: [] for k in CASES}
    for r in range(args.repeat):
        off, none = lead_step(events, stored, NO_ACCOUNTS)
        on, updates = lead_step(events, stored, RULES)
        if none or len(updates) != n:
            raise SystemExit(f"expected {n} account updates with accounts on, none off")
        agent = account_step(updates, dict(base_table))
        micros["lead step, accounts off"].append(off / n * 1e6)
        micros["lead step, accounts on"].append(on / n * 1e6)
        micros["account step"].append(agent / n * 1e6)
        micros["accounts in all"].append((on - off + agent) / n * 1e6)
        progress("repeats", r + 1, args.repeat)
    base = statistics.median(micros["lead step, accounts off"])
    figures = {
        "leads": n,
        "accounts": args.accounts,
        "batch": BATCH,
        "repeat": args.repeat,
        "us_per_event": {k: spread(v) for k, v in micros.items()},
        "ratio_to_accounts_off": {k: statistics.median(v) / base for k, v in micros.items()},
    }
    rows = [
        "| step | µs per scored event (min / median / max) | vs lead step, accounts off |",
        "|---|---|---|",
        *(
            f"| {k} | {shown(spread(v), '.1f')} | {statistics.median(v) / base:.2f}x |"
            for k, v in micros.items()
        ),
    ]
    record_results(
        "account-cost",
        "The cost of accounts per scored event",
        f"python bench/account_cost.py --leads {n} --accounts {args.accounts} "
        f"--repeat {args.repeat}",
        figures,
        "\n".join(rows),
    )


CASES = (
    "lead step, accounts off",
    "lead step, accounts on",
    "account step",
    "accounts in all",
)

if __name__ == "__main__":
    main()
