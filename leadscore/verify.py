"""`leadscore verify`: check the published topics against scoring's invariants.

It reads lead-state, score-changes and actions from the beginning to their ends
(read_committed, so aborted transactions are not counted) and checks, per lead:

- the audit is a chain: each change's ``new_score = old_score - decay_applied + delta``
  and its ``old_score`` is the previous change's ``new_score``;
- the lead's published score is the last change's ``new_score``, and its event
  count is the number of audited events (where retention has deleted nothing);
- no event id is counted twice: the lead's event count equals its distinct audited
  events. Under exactly_once every record is published once, so any repeated
  change or action record is a violation. Under at_least_once a restart replays
  the records after the last commit: a change sent again with the same scores is
  a *repeated record*; one re-applied to state rolled back to the changelog (other
  scores, the chain restarting) is a *replayed record*; both are counted, not
  violations, and so are actions re-sent under the same id;
- every threshold action matches a crossing in the audit: its cause event was
  scored for that lead, its previous score is below the threshold and its score
  at or above it;
- action ids have no gaps: ids are ``uuid5(contact, kind, name, n)`` for
  n = 0, 1, 2, ..., so a missing n below one seen is a lost action;
- an action id that appears twice carries the same action (a repeated record).

The report counts violations by kind and names a few leads (redacted).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from leadscore.codecs.read_back import decode_output
from leadscore.config import Settings
from leadscore.errors import TopicUnreadable
from leadscore.logs import redact
from leadscore.scoring import Rules
from leadscore.scoring.engine import action_id

# Scores are published with 4 decimals; each change adds at most one rounding step.
TOLERANCE = 0.0006
EXAMPLES = 5
VOLATILE = ("emitted_at",)  # what may differ between two sends of the same action


@dataclass
class Topic:
    """What was read of one topic: records per key in log order, and if any were deleted."""

    name: str
    by_key: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    records: int = 0
    undecodable: int = 0
    truncated: bool = False  # some partition's log no longer starts at offset 0


def read_topic(
    settings: Settings,
    topic: str,
    progress: Callable[[str, int], None] | None = None,
    timeout: float = 30.0,
) -> Topic:
    """Every committed record of ``topic`` up to its current end, grouped by key."""
    consumer = Consumer(
        {
            **settings.confluent_config(),
            "group.id": "leadscore-verify",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
        }
    )
    read = Topic(topic)
    try:
        partitions = consumer.list_topics(topic, timeout=timeout).topics[topic].partitions
        pending = set()
        assign = []
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            read.truncated = read.truncated or low > 0
            if high > low:
                pending.add(p)
                assign.append(TopicPartition(topic, p, low))
        consumer.assign(assign)
        idle = 0.0
        while pending:
            message = consumer.poll(1.0)
            if message is None:
                idle += 1.0
                if idle > timeout:
                    raise TimeoutError(f"{topic}: no record for {timeout} s, partitions {pending}")
                continue
            idle = 0.0
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(message.partition())
                    continue
                raise TopicUnreadable(f"{topic}: {error}")
            read.records += 1
            try:
                value = decode_output(message.value())
            except Exception:
                read.undecodable += 1
                continue
            key = message.key()
            read.by_key[key.decode("utf-8", "replace") if key else ""].append(value)
            if progress is not None and read.records % 10_000 == 0:
                progress(topic, read.records)
    finally:
        consumer.close()
    return read


@dataclass
class Report:
    leads: int = 0
    lead_state_records: int = 0
    changes: int = 0
    actions: int = 0
    audited_events: int = 0
    repeated_changes: int = 0  # the same change record sent again (at_least_once)
    repeated_actions: int = 0  # the same action sent again (same id, same content)
    replayed_changes: int = 0  # at_least_once: an event re-applied after a restart
    replayed_actions: int = 0  # at_least_once: an action id re-sent with other content
    tombstoned: int = 0  # leads whose last lead-state is a tombstone (merged away, erased)
    truncated: list[str] = field(default_factory=list)  # topics whose start was deleted
    violations: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def violate(self, kind: str, contact: str) -> None:
        self.violations[kind].append(contact)

    @property
    def ok(self) -> bool:
        return not any(self.violations.values())

    def counts(self) -> dict[str, int]:
        return {kind: len(leads) for kind, leads in sorted(self.violations.items())}

    def figures(self) -> list[tuple[str, str, int]]:
        """(key, label, count) of everything counted, for the table and for --json."""
        return [
            ("leads", "leads (lead-state keys)", self.leads),
            ("lead_state_records", "lead-state records", self.lead_state_records),
            ("score_change_records", "score-change records", self.changes),
            ("audited_events", "audited events (distinct)", self.audited_events),
            ("action_records", "action records", self.actions),
            ("repeated_changes", "repeated score-change records", self.repeated_changes),
            ("repeated_actions", "repeated action records", self.repeated_actions),
            (
                "replayed_changes",
                "replayed score-change records (at_least_once)",
                self.replayed_changes,
            ),
            ("replayed_actions", "replayed action records (at_least_once)", self.replayed_actions),
            ("tombstoned", "leads merged away or erased (tombstones)", self.tombstoned),
        ]

    def summary(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            **{key: value for key, _, value in self.figures()},
            "truncated": self.truncated,
            "violations": self.counts(),
        }

    def render(self) -> str:
        lines = ["| checked | count |", "|---|---|"]
        lines += [f"| {label} | {value:,} |" for _, label, value in self.figures()]
        lines += ["", "| invariant | violations | leads (redacted) |", "|---|---|---|"]
        for kind in INVARIANTS:
            leads = self.violations.get(kind, [])
            shown = ", ".join(redact(c) for c in leads[:EXAMPLES])
            lines.append(f"| {kind} | {len(leads):,} | {shown} |")
        if self.truncated:
            lines.append("")
            lines.append(
                "Retention has deleted the start of "
                + ", ".join(self.truncated)
                + ": event counts and gaps before the first record kept are not checked."
            )
        lines.append("")
        lines.append("OK: every invariant holds" if self.ok else "FAILED: see the violations above")
        return "\n".join(lines)


INVARIANTS = (
    "audit chain broken",
    "score differs from the audit",
    "event count differs from the audit",
    "event counted twice",
    "record repeated under exactly_once",
    "threshold action without a crossing",
    "action caused by an event never scored",
    "action id gap (lost action)",
    "action id reused for a different action",
)


def _close(a: float, b: float, steps: int = 1) -> bool:
    return math.isclose(a, b, abs_tol=TOLERANCE * max(1, steps))


def _same_action(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return {k: v for k, v in a.items() if k not in VOLATILE} == {
        k: v for k, v in b.items() if k not in VOLATILE
    }


def check(
    lead_state: Topic,
    changes: Topic,
    actions: Topic,
    rules: Rules | None = None,
    exactly_once: bool = False,
) -> Report:
    """Check the invariants over what was read; ``rules`` adds the threshold levels."""
    report = Report(
        lead_state_records=lead_state.records,
        changes=changes.records,
        actions=actions.records,
        # lead-state is compacted: its older records go by design, so only the others count
        truncated=[t.name for t in (changes, actions) if t.truncated],
    )
    thresholds = {t.name: t.score for t in rules.thresholds} if rules is not None else {}
    contacts = set(lead_state.by_key) | set(changes.by_key) | set(actions.by_key)
    report.leads = len(lead_state.by_key)
    for contact in sorted(contacts):
        records = changes.by_key.get(contact, [])
        scored = _check_audit(contact, records, exactly_once, report)
        states = lead_state.by_key.get(contact)
        if states and states[-1] is None:
            report.tombstoned += 1  # merged into another lead, or erased: nothing to check
        elif states:
            merged = any(change.get("event_type") == "merge" for change in records)
            _check_state(contact, states[-1], records, scored, changes.truncated, report, merged)
        _check_actions(
            contact,
            actions.by_key.get(contact, []),
            scored,
            thresholds,
            actions.truncated,
            exactly_once,
            report,
        )
    return report


def _check_audit(
    contact: str, records: list[dict[str, Any]], exactly_once: bool, report: Report
) -> dict[str, dict[str, Any]]:
    """The lead's distinct scored events (event id -> latest change), checking the chain.

    Under at_least_once a replay restarts the chain from the changelog's state, so
    only each record's own arithmetic is checked there, not the links between them.
    """
    scored: dict[str, dict[str, Any]] = {}
    previous: dict[str, Any] | None = None
    for change in records:
        event = change["event_id"]
        first = scored.get(event)
        if first is not None:
            same = _close(first["old_score"], change["old_score"]) and _close(
                first["new_score"], change["new_score"]
            )
            if exactly_once:
                report.violate("record repeated under exactly_once", contact)
            elif same:
                report.repeated_changes += 1
            else:
                report.replayed_changes += 1
        expected = change["old_score"] - change["decay_applied"] + change["delta"]
        linked = previous is None or _close(change["old_score"], previous["new_score"])
        if not _close(change["new_score"], expected, 3) or (exactly_once and not linked):
            report.violate("audit chain broken", contact)
        scored[event] = change
        previous = change
    report.audited_events += len(scored)
    return scored


def _check_state(
    contact: str,
    state: dict[str, Any],
    records: list[dict[str, Any]],
    scored: dict[str, dict[str, Any]],
    audit_truncated: bool,
    report: Report,
    merged: bool = False,
) -> None:
    """``records`` are the lead's change records in log order: the last one is the state
    it published last (under at_least_once, of the latest replay). A lead that absorbed
    others (a ``merge`` change) counts their events too, which its own audit does not
    list: its count is checked to be at least its own events'."""
    if records:
        if not _close(state["score"], records[-1]["new_score"]):
            report.violate("score differs from the audit", contact)
    elif state["score"] != 0 and not audit_truncated:
        report.violate("score differs from the audit", contact)
    if merged:
        events = sum(1 for c in scored.values() if c.get("event_type") != "merge")
        if not audit_truncated and state["event_count"] < events:
            report.violate("event count differs from the audit", contact)
        return
    if not audit_truncated and state["event_count"] != len(scored):
        # more counted than distinct events: one was counted twice
        kind = (
            "event counted twice"
            if state["event_count"] > len(scored)
            else "event count differs from the audit"
        )
        report.violate(kind, contact)


def _check_actions(
    contact: str,
    records: list[dict[str, Any]],
    scored: dict[str, dict[str, Any]],
    thresholds: dict[str, float],
    truncated: bool,
    exactly_once: bool,
    report: Report,
) -> None:
    seen: dict[str, dict[str, Any]] = {}
    for action in records:
        first = seen.get(action["action_id"])
        if first is not None:
            if exactly_once:
                report.violate("record repeated under exactly_once", contact)
            elif _same_action(first, action):
                report.repeated_actions += 1
            elif first["kind"] == action["kind"] and first["name"] == action["name"]:
                # a replay reached the same crossing through other events
                report.replayed_actions += 1
            else:
                report.violate("action id reused for a different action", contact)
            continue
        seen[action["action_id"]] = action
        cause = action.get("cause_event_id")
        if action["kind"] == "erased":
            continue  # caused by an erase request (its id), not by an event
        if cause is not None and cause not in scored:
            report.violate("action caused by an event never scored", contact)
        if action["kind"] == "threshold_crossed":
            level = thresholds.get(action["name"])
            crossed = cause in scored and action["score"] <= scored[cause]["new_score"] + TOLERANCE
            if level is not None:
                crossed = crossed and action["previous_score"] < level <= action["score"]
            if not crossed:
                report.violate("threshold action without a crossing", contact)
    if not truncated and _has_gap(contact, seen):
        report.violate("action id gap (lost action)", contact)


def _has_gap(contact: str, seen: dict[str, dict[str, Any]]) -> bool:
    """Whether some (kind, name) sequence skips a number below the highest one seen."""
    by_series: dict[tuple[str, str], set[str]] = defaultdict(set)
    for action in seen.values():
        by_series[(action["kind"], action["name"])].add(action["action_id"])
    for (kind, name), present in by_series.items():
        # ids 0..n-1 must all be present; any other id means one below it is missing
        expected = {action_id(contact, kind, name, n) for n in range(len(present))}
        if present != expected:
            return True
    return False


def verify_deployment(
    settings: Settings,
    rules: Rules | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> Report:
    """Read the three topics named by ``settings`` and check them under its guarantee."""
    return check(
        read_topic(settings, settings.lead_state_topic, progress),
        read_topic(settings, settings.score_changes_topic, progress),
        read_topic(settings, settings.actions_topic, progress),
        rules,
        exactly_once=settings.processing_guarantee == "exactly_once",
    )
