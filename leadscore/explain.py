"""Offline evaluation: run the scoring core over a JSON-lines event file, no Kafka.

Each contact's events are applied in file order (the order they would arrive),
each as if processed the moment it occurred. Between events, and up to
``until``, decay-driven re-assessments run at the exact times the engine
schedules them, so a timeline shows stage downgrades a worker's timer emits.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO

import orjson
from pydantic import ValidationError

from leadscore.scoring import EngagementEvent, LeadRecord, Rules, apply_event, apply_tick
from leadscore.scoring.engine import Applied, score_at
from leadscore.scoring.records import LeadAction, Reason, out


@dataclass(frozen=True, slots=True)
class Step:
    """One line of a contact's timeline: an event, or a decay-driven re-assessment."""

    at_ms: int
    event: EngagementEvent | None
    applied: Applied
    score: float


@dataclass(slots=True)
class Timeline:
    contact_id: str
    steps: list[Step] = field(default_factory=list)
    record: LeadRecord | None = None
    end_ms: int = 0


@dataclass(slots=True)
class BadLine:
    line: int
    message: str


def read_events(lines: Iterable[bytes | str]) -> Iterator[EngagementEvent | BadLine]:
    """Events from JSON lines; a line that is not a valid event is reported, not fatal."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield EngagementEvent.model_validate(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            yield BadLine(number, f"not JSON: {exc}")
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "event"
            yield BadLine(number, f"{where}: {first['msg']}")


def explain(
    events: Iterable[EngagementEvent], rules: Rules, until_ms: int | None = None
) -> dict[str, Timeline]:
    """Each contact's timeline, in order of first appearance."""
    timelines: dict[str, Timeline] = {}
    last_ms: int | None = None
    for event in events:
        timeline = timelines.setdefault(event.contact_id, Timeline(event.contact_id))
        _tick_until(timeline, rules, event.occurred_at)
        applied = apply_event(timeline.record, event, rules, now_ms=event.occurred_at)
        if applied.status == "scored":
            timeline.record = applied.record
        record = timeline.record
        score = record.score if record is not None else 0.0
        timeline.steps.append(Step(event.occurred_at, event, applied, score))
        last_ms = event.occurred_at if last_ms is None else max(last_ms, event.occurred_at)
    end = until_ms if until_ms is not None else last_ms
    if end is not None:
        for timeline in timelines.values():
            _tick_until(timeline, rules, end)
            timeline.end_ms = end
    return timelines


def _tick_until(timeline: Timeline, rules: Rules, end_ms: int) -> None:
    """Apply every scheduled re-assessment due at or before ``end_ms``."""
    record = timeline.record
    while record is not None and record.due_ms is not None and record.due_ms <= end_ms:
        at = record.due_ms
        applied = apply_tick(record, rules, now_ms=at)
        record = applied.record
        if applied.actions:
            timeline.steps.append(Step(at, None, applied, score_at(record, rules, at)))
    timeline.record = record


def render(timelines: dict[str, Timeline], rules: Rules, stream: IO[str]) -> None:
    """A readable timeline per contact: what happened, the points and why, what fired."""
    stream.write(f"rules {rules.version}, half-life {rules.half_life_days:g} days\n")
    for timeline in timelines.values():
        stream.write(f"\ncontact {timeline.contact_id}\n")
        for step in timeline.steps:
            stream.write(_line(step) + "\n")
            for action in step.applied.actions:
                stream.write(f"{'':22}  => {_action(action)}\n")
        record = timeline.record
        if record is not None:
            grade = rules.grade_for(record.fit)
            now = score_at(record, rules, timeline.end_ms)
            stream.write(
                f"{'':22}  at {_when(timeline.end_ms)}: score {out(now):g}, stage "
                f"{record.stage}, fit {out(record.fit):g}"
                + (f" (grade {grade})" if grade else "")
                + (f", disqualified by {record.disqualified_by}" if record.disqualified else "")
                + "\n"
            )


def to_json(timelines: dict[str, Timeline]) -> Iterator[bytes]:
    """The same timelines as JSON lines (one per step) for tools."""
    for timeline in timelines.values():
        for step in timeline.steps:
            change = step.applied.change
            yield orjson.dumps(
                {
                    "contact_id": timeline.contact_id,
                    "at": step.at_ms,
                    "event_id": step.event.event_id if step.event else None,
                    "event_type": step.event.type if step.event else None,
                    "status": step.applied.status,
                    "score": out(step.score),
                    "stage": step.applied.record.stage,
                    "change": change.to_dict() if change else None,
                    "actions": [a.to_dict() for a in step.applied.actions],
                }
            )


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _reasons(reasons: Iterable[Reason]) -> str:
    parts = []
    for r in reasons:
        text = f"{r.rule_id} {out(r.points):+g}"
        if r.clipped:
            text += f", {out(r.clipped):g} clipped by cap {r.cap_id}"
        parts.append(text)
    return "; ".join(parts)


def _line(step: Step) -> str:
    head = f"  {_when(step.at_ms)}"
    applied = step.applied
    if step.event is None:
        return f"{head}  {'(decay)':16} score {out(step.score):g}, stage {applied.record.stage}"
    kind = step.event.type[:16]
    if applied.status != "scored" or applied.change is None:
        why = {
            "duplicate": "duplicate event id, ignored",
            "too_late": "too late, dead-lettered",
            "frozen": "consent withdrawn: not scored",
        }
        return f"{head}  {kind:16} {why.get(applied.status, applied.status)}"
    change = applied.change
    text = f"{head}  {kind:16} {out(change.delta):+g}"
    if change.reasons:
        text += f" ({_reasons(change.reasons)})"
    elif not change.delta:
        text += " (no rule matched)"
    text += f" -> score {out(change.new_score):g}, stage {applied.record.stage}"
    if change.new_fit != change.old_fit:
        text += f"; fit {out(change.old_fit):g} -> {out(change.new_fit):g}"
        text += f" ({_reasons(change.fit_reasons)})" if change.fit_reasons else ""
    return text


def _action(action: LeadAction) -> str:
    what = {
        "threshold_crossed": f"threshold {action.name} crossed at {out(action.score):g}",
        "stage_changed": f"stage {action.previous_stage} -> {action.stage}",
        "disqualified": f"disqualified by rule {action.name}",
        "erased": "erased",
        "consent_withdrawn": "consent withdrawn: frozen until granted",
    }[action.kind]
    if action.kind == "threshold_crossed":
        top = ", ".join(f"{r.rule_id} {out(r.points):g}" for r in action.reasons[:5])
        what += f" (because: {top}"
        what += f"; grade {action.grade})" if action.grade else ")"
    if action.cause_event_id is None:
        what += " [decay, no event]"
    return f"{action.kind}: {what}"
