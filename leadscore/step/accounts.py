"""The account agent's step: a batch of account updates (and ticks) in, its effects out.

``process_accounts(batch, read, timers, rules, now, encoders)`` applies each
contact's share (``leadscore.scoring.accounts.apply_share``) to its account,
against the accounts as the batch has left them so far, and returns the
outputs (account actions and dead letters in order, then each touched
account's state once) and the table writes, one per touched key per batch.

Law (tests/unit/test_accounts.py): any split of the records into batches gives
the same actions and dead letters, the same table, and the same last state of
every account. An account's state is a snapshot on a compacted topic, so a
batch sends only its last: one record per touched account per batch, not one
per contact update.

A share whose version the account already has (an at_least_once replay, a
late duplicate) changes nothing and sends nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from leadscore.codecs.accounts import (
    TICK_HEADER,
    account_key,
    decode_account,
    decode_member,
    decode_share,
    member_key,
)
from leadscore.errors import InvalidEvent
from leadscore.scoring.accounts import (
    AccountRecord,
    Applied,
    Member,
    apply_share,
    apply_tick,
    coverage,
    engaged,
    next_due,
    standing,
)
from leadscore.scoring.records import out
from leadscore.scoring.rules import Rules
from leadscore.step.batch import Input, LogLine, Output, dead_lettered
from leadscore.step.wheel import Timers, due_now

#: Top contacts in an account's state record.
TOP = 10

#: A stored entry by (partition, key): its bytes, or the entry itself when a batch in
#: flight left it; None when there is none.
Read = Callable[[int, bytes], bytes | AccountRecord | Member | None]


@dataclass(slots=True)
class AccountEffects:
    outputs: list[Output] = field(default_factory=list)
    #: entries to store by key: (partition, the batch's last value; None: delete)
    writes: dict[bytes, tuple[int, AccountRecord | Member | None]] = field(default_factory=dict)
    applied: int = 0
    duplicates: int = 0
    actions: Counter[tuple[str, str]] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    logs: list[LogLine] = field(default_factory=list)


def account_state(record: AccountRecord, rules: Rules, now_ms: int) -> dict[str, Any]:
    """An account's snapshot (schemas/account_state.avsc) at processing time ``now_ms``."""
    at = max(now_ms, record.ref_ms)
    ranked = standing(record, rules, at)
    active = engaged(ranked, rules)
    return {
        "account_id": record.account_id,
        "score": out(record.score),
        "current_score": out(record.engagement.at(at, rules)),
        "stage": record.stage,
        "contacts": record.contacts,
        "engaged_contacts": len(active),
        "engaged_capped": record.overflowed,
        "coverage": coverage(active),
        "top_contacts": [{"contact_id": c, "score": out(s)} for c, s, _ in ranked[:TOP]],
        "last_event_at": record.ref_ms,
        "updated_at": at,
        "rules_version": record.rules_version,
    }


class _Batch:
    def __init__(
        self,
        read: Read,
        timers: Timers,
        rules: Rules,
        now: int,
        encode_state: Callable[[dict[str, Any]], bytes],
        encode_action: Callable[[dict[str, Any]], bytes],
    ) -> None:
        self.read = read
        self.timers = timers
        self.rules = rules
        self.now = now
        self.encode_state = encode_state
        self.encode_action = encode_action
        self.entries: dict[bytes, AccountRecord | Member | None] = {}
        self.touched: dict[bytes, int] = {}
        self.changed: dict[bytes, int] = {}  # accounts whose state the batch sends
        self.effects = AccountEffects()

    def entry(self, partition: int, key: bytes) -> AccountRecord | Member | None:
        if key in self.entries:
            return self.entries[key]
        stored = self.read(partition, key)
        if isinstance(stored, bytes):
            stored = decode_account(stored) if key.startswith(b"a") else decode_member(stored)
        self.entries[key] = stored
        return stored

    def put(self, partition: int, key: bytes, value: AccountRecord | Member | None) -> None:
        self.entries[key] = value
        self.touched[key] = partition

    def account(self, partition: int, key: bytes) -> AccountRecord | None:
        found = self.entry(partition, key)
        return found if isinstance(found, AccountRecord) else None

    def keep(self, partition: int, before: AccountRecord | None, applied: Applied) -> None:
        updated = applied.record
        key = account_key(updated.account_id)
        wheel = self.timers.wheel(partition, self.now)
        updated.due_ms = wheel.reschedule(
            updated.account_id, before.due_ms if before else None, next_due(updated, self.rules)
        )
        self.timers.move(partition, before.stage if before else None, updated.stage)
        for action in applied.actions:
            self.effects.outputs.append(
                Output(
                    "account_actions",
                    key[2:],
                    self.encode_action(action.to_dict()),
                    partition,
                )
            )
            self.effects.actions[(action.kind, action.name)] += 1
        self.put(partition, key, updated)
        self.changed[key] = partition

    def update(self, record: Input) -> None:
        try:
            share = decode_share(record.key, record.value)
        except InvalidEvent as error:
            output, line = dead_lettered(record, error, "account")
            self.effects.outputs.append(output)
            self.effects.dead_letters[error.reason] += 1
            self.effects.logs.append(line)
            return
        partition = record.partition
        key = account_key(share.account_id)
        mkey = member_key(share.account_id, share.contact_id)
        before = self.account(partition, key)
        found = self.entry(partition, mkey)
        member = found if isinstance(found, Member) else None
        applied = apply_share(before, member, share, self.rules, self.now)
        if not applied.changed:
            self.effects.duplicates += 1
            return
        self.effects.applied += 1
        self.put(partition, mkey, applied.member)  # None: deleted (the contact left)
        self.keep(partition, before, applied)

    def tick(self, partition: int) -> None:
        now = self.now
        wheel = self.timers.wheel(partition, now)
        visited = changed = 0
        for _, before in due_now(
            wheel, now, lambda name: self.account(partition, account_key(name))
        ):
            visited += 1
            applied = apply_tick(before, self.rules, now)  # taken off its slot already
            changed += bool(applied.actions)
            self.keep(partition, before, applied)
        if visited:
            self.effects.logs.append(
                LogLine(
                    "info",
                    "timer: partition %s re-assessed %s due account(s), %s changed stage",
                    (partition, visited, changed),
                )
            )

    def finish(self) -> AccountEffects:
        for key, partition in self.changed.items():  # each touched account's state, once
            record = self.entries[key]
            if isinstance(record, AccountRecord):
                state = self.encode_state(account_state(record, self.rules, self.now))
                self.effects.outputs.append(Output("account_state", key[2:], state, partition))
        for key, partition in self.touched.items():
            self.effects.writes[key] = (partition, self.entries[key])
        return self.effects


def is_tick(record: Input) -> bool:
    return any(name == TICK_HEADER for name, _ in record.headers)


def process_accounts(
    batch: Iterable[Input],
    read: Read,
    timers: Timers,
    rules: Rules,
    now: int,
    encode_state: Callable[[dict[str, Any]], bytes],
    encode_action: Callable[[dict[str, Any]], bytes],
) -> AccountEffects:
    """Apply ``batch`` (account updates and ticks) at processing time ``now``."""
    step = _Batch(read, timers, rules, now, encode_state, encode_action)
    for record in batch:
        if is_tick(record):
            step.tick(record.partition)
        else:
            step.update(record)
    return step.finish()
