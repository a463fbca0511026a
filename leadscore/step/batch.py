"""The worker's step: a batch of input records in, everything it causes out, as data.

``process(batch, read, timers, rules, now, ...)`` decodes each record (or
dead-letters it), scores it with the pure core against the lead as the batch
has left it so far, and returns ``Effects``: the output records in the order
they are to be sent, the lead records to write (one per touched lead: the
batch's last) and the tallies for metrics and logs.
Nothing here knows Faust or Kafka; the agent (``leadscore.stream.app``) sends
the outputs, writes the leads and acknowledges the batch, and the ordering
that makes that safe is ``leadscore.stream.faust_ext.ordering``'s.

Law (tests/unit/test_step.py): for a fixed ``now``, any split of a sequence of
records into consecutive batches gives the same outputs, in the same order, the
same lead records and the same timer and stage index. Outputs are per record
(each scored event sends its actions, its score change and the lead's state);
only the lead records are coalesced, one write per touched lead per batch.

``timers`` (the in-memory timer wheels and stage counts, derived from the lead
records: ``leadscore.step.wheel``) is the one piece of state the step
updates in place: it is an index over the leads, not a store of its own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from leadscore.codecs.dlq import dlq_headers
from leadscore.codecs.events import decode_event
from leadscore.codecs.leads import decode_lead, encode_lead
from leadscore.errors import InvalidEvent
from leadscore.logs import redact
from leadscore.scoring import LeadRecord, Rules, apply_event, apply_tick, new_lead, snapshot
from leadscore.scoring.accounts import Share, gone, shares
from leadscore.scoring.engine import CONSENT, Applied, erased_action
from leadscore.scoring.engine import CONSENT_STATUSES as STATUSES
from leadscore.scoring.events import EngagementEvent, id_problem
from leadscore.scoring.merge import merge_leads, merges_within_week, stub
from leadscore.step import identity
from leadscore.step.identity import MAX_HOPS, Handoff, Kind, read_handoff
from leadscore.step.privacy import (
    SUPPRESSED_PREFIX,
    EraseRequest,
    PrivacyKeyMissing,
    contact_hash,
    read_request,
    receipt,
    suppressed_key,
    suppression_entry,
)
from leadscore.step.wheel import Timers, due_now
from leadscore.stream.partitioning import key_partition

TOO_LATE = "too_late"
FROM_FUTURE = "from_future"
OUTPUT_TOO_LARGE = "output_too_large"

#: A lead's stored record, by (partition, key): its bytes, or the record itself when a
#: batch still in flight left it (its write not made yet); None for a lead never stored.
Read = Callable[[int, bytes], bytes | LeadRecord | None]

#: Where an output goes; the agent maps each to its topic.
Destination = Literal[
    "actions",
    "score_changes",
    "lead_state",
    "dlq",
    "handoff",
    "privacy",
    "receipts",
    "account_updates",
    "account_state",
    "account_actions",
]


@dataclass(frozen=True, slots=True)
class Input:
    """One record read from the input topics."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None
    tick: bool = False  # a record of the ticks topic: visit the partition's due leads
    handoff: bool = False  # a record of the hand-off topic (leadscore.step.identity)
    privacy: bool = False  # a record of the privacy topic (leadscore.step.privacy)
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class Output:
    destination: Destination
    key: bytes | None
    value: bytes | None
    #: The input partition whose record caused it: under exactly_once an output goes
    #: in the transaction of that partition, with the record's offset.
    source: int
    headers: tuple[tuple[str, bytes], ...] = ()
    partition: int | None = None  # None: the key's (murmur2) partition


@dataclass(frozen=True, slots=True)
class Scored:
    """What the agent needs to observe latencies for one scored event."""

    timestamp_ms: int | None  # the input record's Kafka timestamp
    occurred_ms: int  # the event's time
    actions: int  # how many actions it caused


@dataclass(frozen=True, slots=True)
class LogLine:
    level: Literal["info", "warning", "error"]
    message: str
    args: tuple[Any, ...] = ()


@dataclass(slots=True)
class Effects:
    outputs: list[Output] = field(default_factory=list)
    #: Lead records to store, by key: (partition, the lead's last record in the batch;
    #: None: delete the key). The agent encodes them (``encode_lead``) once it has
    #: added where their score changes landed (``leadscore.stream.history``).
    writes: dict[bytes, tuple[int, LeadRecord | None]] = field(default_factory=dict)
    scored: list[Scored] = field(default_factory=list)
    duplicates: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    actions: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: (threshold name, seconds from the lead's first event to the crossing)
    time_to_threshold: list[tuple[str, float]] = field(default_factory=list)
    rewound: int = 0
    #: events that arrived on another partition than their key's, by partition
    off_partition: Counter[int] = field(default_factory=Counter)
    #: identity: merges applied, stubs written, records handed to another partition
    merges: int = 0
    #: events of leads whose consent is withdrawn: not scored
    frozen: int = 0
    #: erase requests carried out; events of erased contacts dropped
    erased: int = 0
    suppressed: int = 0
    handoffs: Counter[str] = field(default_factory=Counter)
    logs: list[LogLine] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Limits:
    max_event_bytes: int
    max_properties_bytes: int
    max_output_bytes: int
    max_ahead_ms: int
    partitions: int  # of the input topic
    privacy_key: bytes | None = None  # of the keyed hash that names erased contacts


def dead_lettered(record: Input, error: InvalidEvent, keyed_by: str) -> tuple[Output, LogLine]:
    """The dead-letter record of an input record that cannot be processed (its key and
    bytes as they came, headers saying why), and the log line (the key redacted)."""
    headers = dlq_headers(error, record.topic, record.partition, record.offset, record.timestamp_ms)
    output = Output("dlq", record.key, record.value, record.partition, tuple(headers))
    line = LogLine(
        "warning",
        f"dead-lettered reason=%s partition=%s offset=%s {keyed_by}=%s",
        (error.reason, record.partition, record.offset, redact(record.key)),
    )
    return output, line


class Encoders:
    """The output encoders (Avro or JSON, as configured) and the topic names for size errors."""

    def __init__(
        self,
        action: Callable[[dict[str, Any]], bytes],
        change: Callable[[dict[str, Any]], bytes],
        state: Callable[[dict[str, Any]], bytes],
        topic_names: Mapping[str, str],
    ) -> None:
        self.action = action
        self.change = change
        self.state = state
        self.topic_names = topic_names


class _Batch:
    """One call of ``process``: the leads as the batch has left them, and what it produced."""

    def __init__(
        self,
        read: Read,
        timers: Timers,
        rules: Rules,
        now: int,
        limits: Limits,
        encoders: Encoders,
    ) -> None:
        self.read = read
        self.timers = timers
        self.rules = rules
        self.now = now
        self.limits = limits
        self.enc = encoders
        self.records: dict[bytes, LeadRecord | None] = {}  # read once per batch
        self.touched: dict[bytes, int] = {}  # leads to write (to their partition), in order
        self.deleted: set[bytes] = set()  # keys to delete (an erased lead, its stubs)
        self.effects = Effects()

    def lead(self, key: bytes, partition: int) -> LeadRecord | None:
        if key in self.records:
            return self.records[key]
        stored = self.read(partition, key)
        record = decode_lead(stored, key) if isinstance(stored, bytes) else stored
        self.records[key] = record
        return record

    def dead_letter(self, record: Input, error: InvalidEvent) -> None:
        output, line = dead_lettered(record, error, "contact")
        self.effects.outputs.append(output)
        self.effects.dead_letters[error.reason] += 1
        self.effects.logs.append(line)

    def encode(self, applied: Applied, source: int) -> tuple[list[Output], bytes]:
        """An applied step's actions and audit record (in order), and its lead-state value."""
        outputs = [
            Output("actions", None, self.enc.action(a.to_dict()), source) for a in applied.actions
        ]
        if applied.change is not None:
            change = self.enc.change(applied.change.to_dict())
            outputs.append(Output("score_changes", None, change, source))
        state = self.enc.state(snapshot(applied.record, self.rules, self.now).to_dict())
        return outputs, state

    def oversized(self, key: bytes, outputs: list[Output], state: bytes, lead: bytes) -> str | None:
        """Which record of a step would be over LEADSCORE_MAX_OUTPUT_BYTES, if any."""
        names = self.enc.topic_names
        sized = [(names[o.destination], o.value or b"") for o in outputs]
        sized += [(names["lead_state"], state), (names["leads"], lead)]
        for topic, value in sized:
            size = len(key) + len(value)
            if size > self.limits.max_output_bytes:
                return f"{topic} record of {size} bytes"
        return None

    def record_outputs(
        self, key: bytes, source: int, applied: Applied, outputs: list[Output], state: bytes
    ) -> None:
        effects = self.effects
        record = applied.record
        effects.outputs.extend(Output(o.destination, key, o.value, source) for o in outputs)
        effects.outputs.append(Output("lead_state", key, state, source))
        for action in applied.actions:
            effects.actions[(action.kind, action.name)] += 1
            if action.kind == "threshold_crossed":
                effects.time_to_threshold.append(
                    (action.name, (record.ref_ms - record.first_event_ms) / 1000)
                )

    def store(
        self, key: bytes, partition: int, before: LeadRecord | None, after: LeadRecord | None
    ) -> None:
        """Keep ``after`` as the lead of ``key`` (None: delete the key), and tell the accounts
        involved what the contact now brings them (``scoring.accounts.shares``)."""
        if self.rules.accounts.enabled and not key.startswith(SUPPRESSED_PREFIX):
            for share in shares(key.decode("utf-8"), before, after, self.rules):
                self.tell_account(share, partition)
        self.records[key] = after
        self.touched[key] = partition
        if after is None:
            self.deleted.add(key)
        else:
            self.deleted.discard(key)
        self.timers.move(
            partition, before.stage if before else None, after.stage if after else None
        )

    def tell_account(self, share: Share, partition: int) -> None:
        self.effects.outputs.append(
            Output(
                "account_updates",
                share.account_id.encode("utf-8"),
                orjson.dumps(share.to_dict()),
                partition,
            )
        )

    def forget_in_account(self, engagement: EngagementEvent, key: bytes, partition: int) -> None:
        """An event reached ``key``, which holds no lead (a stub, or erased): its account
        forgets the id (``scoring.accounts.gone``), in case a run lost in a crash made it
        a member."""
        if self.rules.accounts.enabled and engagement.account_id:
            share = gone(engagement.account_id, key.decode("utf-8"), engagement.occurred_at)
            self.tell_account(share, partition)

    def keep(
        self, record: Input, key: bytes, before: LeadRecord | None, applied: Applied, what: str
    ) -> bool:
        """Send an applied step's outputs and store its lead, scheduled on the timer wheel;
        unless one of its records would pass LEADSCORE_MAX_OUTPUT_BYTES: then the input
        record is dead-lettered (``what`` made it too large) and the lead stays as it was."""
        updated = applied.record
        outputs, state = self.encode(applied, record.partition)
        too_large = self.oversized(key, outputs, state, encode_lead(updated))
        if too_large is not None:
            limit = f"LEADSCORE_MAX_OUTPUT_BYTES={self.limits.max_output_bytes}"
            self.dead_letter(
                record, InvalidEvent(OUTPUT_TOO_LARGE, f"{what} makes a {too_large}; {limit}")
            )
            return False
        wheel = self.timers.wheel(record.partition, self.now)
        stale = before.due_ms if before is not None else None
        updated.due_ms = wheel.reschedule(key.decode(), stale, updated.due_ms)
        self.record_outputs(key, record.partition, applied, outputs, state)
        self.store(key, record.partition, before, updated)
        return True

    def event(self, record: Input) -> None:
        """A record of the events topic."""
        limits = self.limits
        try:
            engagement = decode_event(
                record.key, record.value, limits.max_event_bytes, limits.max_properties_bytes
            )
        except InvalidEvent as error:
            self.dead_letter(record, error)
            return
        key = engagement.contact_id.encode("utf-8")  # the record's key: decode_event checks it
        if key_partition(key, self.limits.partitions) != record.partition:
            # Its lead lives on its key's partition: hand it there (one home per contact).
            self.effects.off_partition[record.partition] += 1
            self.hand_on(record, "event", key, key, record.value, hops=0)
            return
        self.score(record, engagement, key, hops=0)

    def handoff(self, record: Input) -> None:
        """A record of the hand-off topic (``leadscore.step.identity``)."""
        try:
            handoff = read_handoff(record.headers, record.value)
            if record.key is None:
                raise InvalidEvent("bad_handoff", "a hand-off record without a key")
        except InvalidEvent as error:
            self.dead_letter(record, error)
            return
        if handoff.kind == "absorb":
            self.absorb(record, record.key, handoff)
        elif handoff.kind == "lead":
            self.take_lead(record, record.key, handoff)
        elif handoff.kind in ("erase", "erase_alias"):
            try:
                request = read_request(None, record.value, keyed=False)
            except InvalidEvent as error:
                self.dead_letter(record, error)
                return
            if handoff.kind == "erase":
                self.erase(record, record.key, request, handoff.hops)
            else:
                self.erase_alias(record, record.key, request)
        else:
            limits = self.limits
            try:
                engagement = decode_event(
                    handoff.origin,
                    record.value,
                    limits.max_event_bytes,
                    limits.max_properties_bytes,
                )
            except InvalidEvent as error:
                self.dead_letter(record, error)
                return
            if record.key != handoff.origin:  # an alias's event, scored on its survivor
                engagement = engagement.model_copy(update={"contact_id": record.key.decode()})
            self.score(record, engagement, record.key, handoff.hops)

    def hand_on(
        self,
        record: Input,
        kind: Kind,
        to: bytes,
        origin: bytes,
        value: bytes | None,
        hops: int,
        path: tuple[str, ...] = (),
    ) -> None:
        """Send a hand-off record to the partition of ``to``; past MAX_HOPS, dead-letter
        the record instead (a loop of aliases)."""
        if hops > MAX_HOPS:
            self.dead_letter(
                record,
                InvalidEvent(
                    "alias_loop",
                    f"handed on {MAX_HOPS} times along merged contacts without reaching a lead",
                ),
            )
            return
        self.effects.outputs.append(
            Output(
                "handoff", to, value, record.partition, identity.headers(kind, origin, hops, path)
            )
        )
        self.effects.handoffs[kind] += 1

    def identity_problem(
        self, engagement: EngagementEvent, before: LeadRecord | None
    ) -> str | None:
        """Why an identify or merge event may not merge the contact it names, if it may not."""
        other = merged_contact(engagement)
        if other is None or (before is not None and other in before.absorbed):
            return None  # nothing to merge, or merged before (a repeated identify)
        if self.rules.identity.blocked(other):
            return f"the {engagement.type} names a blocked identifier (rules: identity.blocked_ids)"
        problem = id_problem(other)
        if problem:
            return f"the contact to merge {problem}"
        limit = self.rules.identity.max_merges_per_week
        if before is not None and merges_within_week(before, engagement.occurred_at) >= limit:
            return (
                f"the lead absorbed {limit} contacts within 7 days (identity.max_merges_per_week)"
            )
        return None

    def absorb(self, record: Input, key: bytes, handoff: Handoff) -> None:
        """On the absorbed contact's partition: hand its lead to the survivor, keep a stub."""
        contact, survivor = key.decode(), handoff.survivor
        if contact == survivor:
            return
        before = self.lead(key, record.partition)
        if before is None and self.suppressed(contact, record.partition) is not None:
            self.effects.suppressed += 1  # an erased contact is not merged into anyone
            return
        if before is not None and before.alias_of is not None:
            if before.alias_of == survivor:
                self.effects.duplicates += 1  # merged before: a replayed request
            else:
                self.dead_letter(
                    record,
                    InvalidEvent(
                        "identity_conflict",
                        "the contact to merge was merged into another contact before",
                    ),
                )
            return
        if before is not None and survivor in before.absorbed:
            self.dead_letter(
                record,
                InvalidEvent("merge_cycle", "the survivor was merged into this contact before"),
            )
            return
        value = identity.lead_value(before, handoff.cause_event_id, handoff.occurred_at)
        if len(key) + len(value) > self.limits.max_output_bytes:
            self.dead_letter(
                record,
                InvalidEvent(
                    OUTPUT_TOO_LARGE,
                    f"the lead to hand over makes a record of {len(value)} bytes; "
                    f"LEADSCORE_MAX_OUTPUT_BYTES={self.limits.max_output_bytes}",
                ),
            )
            return
        self.hand_on(record, "lead", survivor.encode(), key, value, hops=0)
        self.retire(key, record.partition, before, stub(before, contact, survivor, self.rules))

    def take_lead(self, record: Input, key: bytes, handoff: Handoff) -> None:
        """On the survivor's partition: merge the absorbed lead into this one."""
        contact, origin = key.decode(), handoff.origin.decode()
        before = self.lead(key, record.partition)
        base = before
        if before is not None and before.alias_of is not None:
            # A stub. If the lead came round a cycle of merges in flight (each of its
            # contacts merged into the next: this stub's target, or this stub, is on
            # the lead's path), the smallest id of the cycle becomes a lead again and
            # takes it; every lead of the cycle reaches it, within two rounds.
            # Otherwise the lead is passed on to the target.
            target = before.alias_of
            path = (origin, *handoff.path)
            joined = next((c for c in (target, contact) if c in path), None)
            if joined is not None and contact == min({*path[path.index(joined) :], contact}):
                base = None
            else:
                self.hand_on(
                    record,
                    "lead",
                    target.encode(),
                    handoff.origin,
                    record.value,
                    handoff.hops + 1,
                    (*handoff.path, contact),
                )
                return
        if before is None:
            suppression = self.suppressed(contact, record.partition)
            if suppression is not None:
                # Erased (perhaps before this merge arrived, perhaps a replay after a
                # crash): nothing of the absorbed lead is kept, and its id is cleared too.
                self.effects.suppressed += 1
                request = EraseRequest("suppressed", contact, suppression[1].consent_ms)
                self.hand_on(record, "erase_alias", handoff.origin, key, request.to_bytes(), hops=0)
                return
        absorbed = handoff.lead or new_lead(origin, None, self.rules)
        applied = merge_leads(base, absorbed, self.rules, self.now, contact, handoff.cause_event_id)
        if applied.status == "duplicate":
            self.effects.duplicates += 1
            return
        if self.keep(record, key, before, applied, "the merge"):
            self.effects.merges += 1

    def privacy_request(self, record: Input) -> None:
        """A record of the privacy topic: an erase request keyed by the contact."""
        if record.value is None:
            return  # a tombstone: this worker's own, once the request was carried out
        try:
            request = read_request(record.key, record.value)
        except InvalidEvent as error:
            self.dead_letter(record, error)
            return
        key = request.contact_id.encode("utf-8")
        # The request is carried out (here or where it is handed): compaction may drop it.
        self.effects.outputs.append(
            Output("privacy", key, None, record.partition, partition=record.partition)
        )
        if key_partition(key, self.limits.partitions) != record.partition:
            self.hand_on(record, "erase", key, key, record.value, hops=0)
            return
        self.erase(record, key, request, hops=0)

    def hash_key(self) -> bytes:
        if self.limits.privacy_key is None:
            raise PrivacyKeyMissing(
                "an erase request arrived and LEADSCORE_PRIVACY_KEY is not set: set it (at "
                "least 16 characters, the same on every worker) and restart; the request "
                "waits unprocessed"
            )
        return self.limits.privacy_key

    def suppress(self, contact: str, partition: int, request: EraseRequest) -> None:
        """Enter ``contact`` in the suppression list (as its keyed hash)."""
        hash_key = self.hash_key()
        entry = suppression_entry(hash_key, contact, request, self.rules.version)
        key = suppressed_key(hash_key, contact)
        self.store(key, partition, self.lead(key, partition), entry)

    def suppressed(self, contact: str, partition: int) -> tuple[bytes, LeadRecord] | None:
        """The suppression entry of an erased contact (its key, the entry), if it has one."""
        if self.limits.privacy_key is None:
            return None
        key = suppressed_key(self.limits.privacy_key, contact)
        entry = self.lead(key, partition)
        return None if entry is None else (key, entry)

    def retire(
        self, key: bytes, partition: int, before: LeadRecord | None, after: LeadRecord | None
    ) -> None:
        """Replace a lead (or stub) by ``after``: a stub naming its survivor, or None to
        delete the key. A lead leaves the timer wheel. Its lead-state gets a tombstone,
        also when no lead is stored: under at_least_once a lead-state record may have been
        sent by a batch whose lead a crash lost (outputs land before state), and this is
        its last chance to be cleared. Only a stub's key, cleared when it became one,
        gets none."""
        if before is None or before.alias_of is None:
            self.effects.outputs.append(Output("lead_state", key, None, partition))
        if before is not None and before.alias_of is None:
            self.timers.wheel(partition, self.now).reschedule(key.decode(), before.due_ms, None)
        if before is not None or after is not None:
            self.store(key, partition, before, after)

    def erase(self, record: Input, key: bytes, request: EraseRequest, hops: int) -> None:
        """On the contact's partition: erase its lead and every contact merged into it."""
        hash_key = self.hash_key()
        partition = record.partition
        before = self.lead(key, partition)
        if before is not None and before.alias_of is not None:
            # Merged into another lead: that lead holds this contact's activity. Erase it
            # (its merged ids, this one among them, go with it).
            target = before.alias_of.encode()
            self.hand_on(record, "erase", target, key, request.to_bytes(), hops + 1)
            return
        aliases = sorted(before.absorbed) if before is not None else []
        for alias in aliases:
            self.hand_on(record, "erase_alias", alias.encode(), key, request.to_bytes(), 0)
        if before is not None:
            action = erased_action(before, self.rules, self.now, request.request_id)
            self.effects.outputs.append(
                Output("actions", key, self.enc.action(action.to_dict()), partition)
            )
            self.effects.actions[(action.kind, action.name)] += 1
        self.retire(key, partition, before, None)
        self.suppress(key.decode(), partition, request)
        value = receipt(request, hash_key, before is not None, len(aliases), self.now)
        self.effects.outputs.append(
            Output("receipts", request.request_id.encode(), value, partition)
        )
        self.effects.erased += 1
        self.effects.logs.append(
            LogLine(
                "info",
                "erased contact %s (request %s): lead %s, %s merged id(s)",
                (
                    contact_hash(hash_key, key.decode()),
                    request.request_id,
                    "cleared" if before is not None else "absent",
                    len(aliases),
                ),
            )
        )

    def erase_alias(self, record: Input, key: bytes, request: EraseRequest) -> None:
        """On a merged contact's partition: clear its stub, suppress its id. Should the id
        hold a lead of its own (a cycle of merges in flight can leave one that the erased
        lead also lists), its merged ids are cleared in turn: an erasure follows every
        link, and stops where nothing is left."""
        before = self.lead(key, record.partition)
        for alias in sorted(before.absorbed) if before is not None else []:
            self.hand_on(record, "erase_alias", alias.encode(), key, request.to_bytes(), 0)
        self.retire(key, record.partition, before, None)
        self.suppress(key.decode(), record.partition, request)

    def score(self, record: Input, engagement: EngagementEvent, key: bytes, hops: int) -> None:
        """Score an event on the lead of ``key``, which lives on this record's partition
        (or hand it on to the survivor, when that lead was merged into another)."""
        limits = self.limits
        before = self.lead(key, record.partition)
        if before is not None and before.alias_of is not None:
            origin = dict(record.headers).get(identity.FROM, key) if record.handoff else key
            target = before.alias_of.encode()
            self.forget_in_account(engagement, key, record.partition)
            self.hand_on(record, "event", target, origin, record.value, hops + 1)
            return
        if before is None:
            suppression = self.suppressed(engagement.contact_id, record.partition)
            if suppression is not None:
                granted = (
                    engagement.type == CONSENT and engagement.properties.get("status") == "granted"
                )
                if not granted:
                    self.effects.suppressed += 1  # erased: dropped, nothing of it kept
                    self.forget_in_account(engagement, key, record.partition)
                    return
                entry_key, entry = suppression
                self.store(entry_key, record.partition, entry, None)  # lifted: a new lead
        problem = self.identity_problem(engagement, before)
        if problem is not None:
            self.dead_letter(record, InvalidEvent("identity_refused", problem))
            return
        if engagement.type == CONSENT and engagement.properties.get("status") not in STATUSES:
            self.dead_letter(
                record,
                InvalidEvent(
                    "invalid_consent", "a consent event's properties.status is granted or withdrawn"
                ),
            )
            return
        now = self.now
        applied = apply_event(before, engagement, self.rules, now, limits.max_ahead_ms)
        if applied.status == FROM_FUTURE:
            ahead = (engagement.occurred_at - now) / 1000
            self.dead_letter(
                record,
                InvalidEvent(
                    FROM_FUTURE,
                    f"occurred_at is {ahead:.0f} s ahead of the worker's clock; the limit is "
                    f"LEADSCORE_MAX_CLOCK_SKEW_SECONDS={limits.max_ahead_ms / 1000:g}",
                ),
            )
            return
        if applied.status == "duplicate":
            self.effects.duplicates += 1
            return
        if applied.status == "frozen":
            self.effects.frozen += 1  # consent withdrawn: not scored, not kept
            return
        if applied.status == TOO_LATE:
            self.dead_letter(
                record,
                InvalidEvent(
                    TOO_LATE,
                    "event is older than this lead's dedupe horizon; it cannot be checked "
                    "for duplicates, so it is not scored",
                ),
            )
            return
        if applied.rewound:
            self.effects.rewound += 1
            self.effects.logs.append(
                LogLine(
                    "warning",
                    "lead %s was dated in the future by an earlier event; its clock is set "
                    "back to now (see docs/topics.md: future-dated events)",
                    (redact(key),),
                )
            )
        if not self.keep(record, key, before, applied, "scoring it"):
            return
        self.effects.scored.append(
            Scored(record.timestamp_ms, engagement.occurred_at, len(applied.actions))
        )
        other = merged_contact(engagement)
        if other is not None:  # identify or merge: ask the other lead's partition for it
            value = identity.absorb_value(
                engagement.contact_id, engagement.event_id, engagement.occurred_at
            )
            self.hand_on(record, "absorb", other.encode(), other.encode(), value, hops=0)

    def tick(self, partition: int) -> None:
        """Re-assess the leads of ``partition`` whose decay crossing time has come."""
        now = self.now
        wheel = self.timers.wheel(partition, now)
        visited = changed = 0
        for contact, before in due_now(
            wheel, now, lambda name: self.lead(name.encode("utf-8"), partition)
        ):
            key = contact.encode("utf-8")
            visited += 1
            applied = apply_tick(before, self.rules, now)
            updated = applied.record
            updated.due_ms = wheel.reschedule(contact, None, updated.due_ms)
            if applied.actions:
                changed += 1
                outputs, state = self.encode(applied, partition)
                too_large = self.oversized(key, outputs, state, encode_lead(updated))
                if too_large is None:
                    self.record_outputs(key, partition, applied, outputs, state)
                else:  # only if the limit was lowered since the lead's last event
                    self.effects.logs.append(
                        LogLine(
                            "error",
                            "timer: lead %s's stage change is not sent: it makes a %s, "
                            "over LEADSCORE_MAX_OUTPUT_BYTES=%s",
                            (redact(key), too_large, self.limits.max_output_bytes),
                        )
                    )
            self.store(key, partition, before, updated)
        if visited:
            self.effects.logs.append(
                LogLine(
                    "info",
                    "timer: partition %s re-assessed %s due lead(s), %s changed stage",
                    (partition, visited, changed),
                )
            )

    def finish(self) -> Effects:
        effects = self.effects
        for key, partition in self.touched.items():
            record = self.records[key]
            if record is not None or key in self.deleted:
                effects.writes[key] = (partition, record)
        return effects


def merged_contact(event: EngagementEvent) -> str | None:
    """The contact an identify (``anonymous_id``) or merge (``properties.from``) event
    merges into its own, if any."""
    if event.type == "identify":
        other = event.anonymous_id
    elif event.type == "merge":
        other = event.properties.get("from")
    else:
        return None
    return other if other and other != event.contact_id else None


def process(
    batch: Iterable[Input],
    read: Read,
    timers: Timers,
    rules: Rules,
    now: int,
    limits: Limits,
    encoders: Encoders,
) -> Effects:
    """Score ``batch`` against the stored leads at processing time ``now``: see the module doc.

    ``read(partition, key)`` is a lead's stored record (None for a new lead); a lead
    lives in the partition its records arrive on.
    """
    step = _Batch(read, timers, rules, now, limits, encoders)
    for record in batch:
        if record.tick:
            step.tick(record.partition)
        elif record.handoff:
            step.handoff(record)
        elif record.privacy:
            step.privacy_request(record)
        else:
            step.event(record)
    return step.finish()
