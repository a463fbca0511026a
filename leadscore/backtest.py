"""Backtests (issue 24): rules files scored over an archive of events, offline, on all cores.

Each contact's events go through the pure scoring core in archive order (the order a
worker reads them), each processed at the time it occurred, with the decay-driven
re-assessments a worker's timer makes in between (``explain``'s replay). The archive's
raw lines are split by a hash of their contact id (parsed once for the id); each
process validates and scores its shards and returns, per contact, its peak score and
when it crossed each threshold.

What the report says, per rules file:

- threshold crossings (MQLs) per ISO week, against a sales capacity when one is given;
- lift by score decile: contacts ranked by their peak score, each tenth's share of
  contacts with an outcome (an ``opportunity_created`` event, say) over the share of
  all contacts;
- precision and recall of each threshold: a contact counts as found when it crossed
  the threshold no later than its first outcome;
- the error bound of an archive that starts ``delta`` after a lead's first event: the
  points scored before the archive decay to at most ``peak x 2^(-delta / half_life)``.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import orjson
from pydantic import ValidationError

from leadscore.scoring import EngagementEvent, LeadRecord, Rules, apply_event, apply_tick
from leadscore.scoring.records import out
from leadscore.scoring.rules import MS_PER_DAY

#: The deltas the error-bound table shows, in days.
BOUND_DAYS = (7, 14, 30, 90, 180)


@dataclass(slots=True)
class Lead:
    """What a backtest keeps of one contact."""

    contact_id: str
    record: LeadRecord | None = None
    peak: float = 0.0
    crossings: list[tuple[str, int]] = field(default_factory=list)  # (threshold, time)


def _tick_until(lead: Lead, rules: Rules, end_ms: int) -> None:
    record = lead.record
    while record is not None and record.due_ms is not None and record.due_ms <= end_ms:
        record = apply_tick(record, rules, now_ms=record.due_ms).record  # stage changes only
    lead.record = record


def replay(events: Iterable[EngagementEvent], rules: Rules, until_ms: int | None) -> list[Lead]:
    """The contacts of ``events`` scored by ``rules``, each event processed when it occurred."""
    leads: dict[str, Lead] = {}
    last = None
    for event in events:
        lead = leads.setdefault(event.contact_id, Lead(event.contact_id))
        _tick_until(lead, rules, event.occurred_at)
        applied = apply_event(lead.record, event, rules, now_ms=event.occurred_at)
        if applied.status != "scored":
            continue
        lead.record = applied.record
        lead.peak = max(lead.peak, applied.record.score)
        for action in applied.actions:
            if action.kind == "threshold_crossed":
                lead.crossings.append((action.name, event.occurred_at))
        last = event.occurred_at if last is None else max(last, event.occurred_at)
    end = until_ms if until_ms is not None else last
    if end is not None:
        for lead in leads.values():
            _tick_until(lead, rules, end)
    return list(leads.values())


def shard_of(contact_id: str, shards: int) -> int:
    digest = hashlib.blake2b(contact_id.encode("utf-8"), digest_size=4).digest()
    return int.from_bytes(digest, "big") % shards


def _replay_shard(job: tuple[list[bytes], Rules, int | None]) -> tuple[list[Lead], int]:
    """A shard's contacts from its raw lines (validated here, in the worker process);
    what goes back is what the report needs (no lead records), and the bad lines."""
    lines, rules, until_ms = job
    events = []
    bad = 0
    for line in lines:
        try:
            events.append(EngagementEvent.model_validate(orjson.loads(line)))
        except (orjson.JSONDecodeError, ValidationError):
            bad += 1
    leads = replay(events, rules, until_ms)
    for lead in leads:
        lead.record = None
    return leads, bad


def shards_of(lines: Iterable[bytes], shards: int) -> tuple[list[list[bytes]], int]:
    """Raw JSON lines split by a hash of their contact id (each contact's lines in order);
    lines without a contact id are counted, not kept."""
    split: list[list[bytes]] = [[] for _ in range(shards)]
    bad = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            contact = orjson.loads(line).get("contact_id")
        except (orjson.JSONDecodeError, AttributeError):
            contact = None
        if not isinstance(contact, str):
            bad += 1
            continue
        split[shard_of(contact, shards)].append(line)
    return split, bad


def replay_all(
    shards: list[list[bytes]],
    rules: Rules,
    until_ms: int | None,
    workers: int,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[Lead], int]:
    """``replay`` over ``workers`` processes, one shard of raw lines at a time (parsed and
    scored in the worker: events are not pickled across); the leads without their
    records, and the lines that were not events."""
    jobs = [(shard, rules, until_ms) for shard in shards if shard]
    leads: list[Lead] = []
    bad = 0
    if workers <= 1:
        parts = map(_replay_shard, jobs)
        for done, (part, skipped) in enumerate(parts, start=1):
            leads.extend(part)
            bad += skipped
            if progress is not None:
                progress(done, len(jobs))
        return leads, bad
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for done, (part, skipped) in enumerate(pool.map(_replay_shard, jobs), start=1):
            leads.extend(part)
            bad += skipped
            if progress is not None:
                progress(done, len(jobs))
    return leads, bad


def week_of(ms: int) -> str:
    year, week, _ = datetime.fromtimestamp(ms / 1000, tz=UTC).isocalendar()
    return f"{year}-W{week:02d}"


@dataclass(frozen=True, slots=True)
class Decile:
    decile: int  # 1: the top tenth by peak score
    contacts: int
    outcomes: int
    lift: float  # outcome rate in the decile over the overall rate (0 without outcomes)
    min_peak: float


@dataclass(frozen=True, slots=True)
class Found:
    threshold: str
    crossed: int
    found: int  # crossed no later than the contact's first outcome
    precision: float
    recall: float


@dataclass(slots=True)
class Evaluation:
    rules_version: str
    contacts: int
    outcomes: int
    per_week: dict[str, dict[str, int]]  # threshold -> ISO week -> crossings
    deciles: list[Decile]
    found: list[Found]
    peak: float
    bounds: list[tuple[int, float]]  # (delta days, bound)


def evaluate(leads: list[Lead], outcomes: dict[str, int], rules: Rules) -> Evaluation:
    """The report's figures for one rules file; ``outcomes``: contact -> first outcome time."""
    per_week: dict[str, Counter[str]] = {t.name: Counter() for t in rules.thresholds}
    for lead in leads:
        for name, at in lead.crossings:
            per_week.setdefault(name, Counter())[week_of(at)] += 1
    ranked = sorted(leads, key=lambda lead: (-lead.peak, lead.contact_id))
    positives = sum(1 for lead in leads if lead.contact_id in outcomes)
    overall = positives / len(leads) if leads else 0.0
    deciles = []
    for d in range(10):
        part = ranked[len(ranked) * d // 10 : len(ranked) * (d + 1) // 10]
        if not part:
            continue
        hits = sum(1 for lead in part if lead.contact_id in outcomes)
        rate = hits / len(part)
        lift = rate / overall if overall else 0.0
        deciles.append(Decile(d + 1, len(part), hits, lift, out(part[-1].peak)))
    found = []
    for threshold in rules.thresholds:
        first: dict[str, int] = {}
        for lead in leads:
            times = [at for name, at in lead.crossings if name == threshold.name]
            if times:
                first[lead.contact_id] = min(times)
        hits = sum(
            1 for contact, at in first.items() if contact in outcomes and at <= outcomes[contact]
        )
        precision = hits / len(first) if first else 0.0
        recall = hits / positives if positives else 0.0
        found.append(Found(threshold.name, len(first), hits, precision, recall))
    peak = max((lead.peak for lead in leads), default=0.0)
    bounds = [
        (days, out(peak * math.pow(2.0, -days * MS_PER_DAY / rules.half_life_ms)))
        for days in BOUND_DAYS
    ]
    return Evaluation(
        rules.version,
        len(leads),
        positives,
        {name: dict(sorted(weeks.items())) for name, weeks in per_week.items()},
        deciles,
        found,
        out(peak),
        bounds,
    )


def render(
    evaluations: list[tuple[str, Evaluation]], threshold: str | None, capacity: int | None
) -> str:
    """The report as Markdown: one column per rules file."""
    names = [name for name, _ in evaluations]
    lines = ["# Backtest", ""]
    lines.append("| | " + " | ".join(names) + " |")
    lines.append("|---|" + "---|" * len(names))
    lines.append("| rules version | " + " | ".join(e.rules_version for _, e in evaluations) + " |")
    lines.append("| contacts | " + " | ".join(f"{e.contacts:,}" for _, e in evaluations) + " |")
    lines.append(
        "| contacts with an outcome | "
        + " | ".join(f"{e.outcomes:,}" for _, e in evaluations)
        + " |"
    )
    lines.append("| peak score | " + " | ".join(f"{e.peak:g}" for _, e in evaluations) + " |")
    chosen = threshold or _first_threshold(evaluations)
    if chosen is not None:
        weeks = sorted({w for _, e in evaluations for w in e.per_week.get(chosen, {})})
        lines += ["", f"## {chosen} crossings per week", ""]
        header = "| week | " + " | ".join(names) + " |"
        lines += [header, "|---|" + "---|" * len(names)]
        for week in weeks:
            cells = []
            for _, e in evaluations:
                n = e.per_week.get(chosen, {}).get(week, 0)
                over = capacity is not None and n > capacity
                cells.append(f"**{n}** (over {capacity})" if over else str(n))
            lines.append(f"| {week} | " + " | ".join(cells) + " |")
        if capacity is not None:
            lines += ["", f"Sales capacity: {capacity} per week."]
    for name, e in evaluations:
        lines += ["", f"## {name}: lift by peak-score decile", ""]
        lines += [
            "| decile | contacts | with an outcome | lift | lowest peak |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {d.decile} | {d.contacts:,} | {d.outcomes:,} | {d.lift:.2f} | {d.min_peak:g} |"
            for d in e.deciles
        ]
        lines += ["", f"## {name}: thresholds against outcomes", ""]
        lines += ["| threshold | crossed | crossed before the outcome | precision | recall |"]
        lines += ["|---|---|---|---|---|"]
        lines += [
            f"| {f.threshold} | {f.crossed:,} | {f.found:,} | {f.precision:.3f} | {f.recall:.3f} |"
            for f in e.found
        ]
        lines += ["", f"## {name}: an archive that starts late", ""]
        lines += ["| archive starts this long after a lead's first event | score error at most |"]
        lines += ["|---|---|"]
        lines += [f"| {days} days | {bound:g} points |" for days, bound in e.bounds]
    return "\n".join(lines) + "\n"


def weekly_mean(evaluation: Evaluation, threshold: str | None, weeks: list[str]) -> float:
    """Mean crossings of ``threshold`` per week over ``weeks``."""
    counts = evaluation.per_week.get(threshold or "", {})
    return sum(counts.get(w, 0) for w in weeks) / len(weeks) if weeks else 0.0


def swing(
    evaluations: list[tuple[str, Evaluation]], threshold: str | None
) -> tuple[str | None, float, float, float]:
    """(threshold, mean per week under the first file, under the last, relative change):
    over the weeks either shows a crossing in."""
    chosen = threshold or _first_threshold(evaluations)
    first, last = evaluations[0][1], evaluations[-1][1]
    weeks = sorted(
        set(first.per_week.get(chosen or "", {})) | set(last.per_week.get(chosen or "", {}))
    )
    before, after = weekly_mean(first, chosen, weeks), weekly_mean(last, chosen, weeks)
    change = (after - before) / before if before else (math.inf if after else 0.0)
    return chosen, before, after, change


def to_json(evaluations: list[tuple[str, Evaluation]]) -> dict[str, object]:
    return {name: asdict(e) for name, e in evaluations}


def _first_threshold(evaluations: list[tuple[str, Evaluation]]) -> str | None:
    for _, e in evaluations:
        for name in e.per_week:
            return name
    return None


def plot(
    evaluations: list[tuple[str, Evaluation]],
    threshold: str | None,
    capacity: int | None,
    path: str,
) -> None:
    """Crossings per week and lift by decile, one series per rules file, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = threshold or _first_threshold(evaluations)
    figure, (weekly, lifts) = plt.subplots(1, 2, figsize=(12, 4.5))
    weeks = sorted({w for _, e in evaluations for w in e.per_week.get(chosen or "", {})})
    width = 0.8 / max(1, len(evaluations))
    for i, (name, e) in enumerate(evaluations):
        counts = [e.per_week.get(chosen or "", {}).get(w, 0) for w in weeks]
        weekly.bar([x + i * width for x in range(len(weeks))], counts, width, label=name)
        lifts.plot(
            [d.decile for d in e.deciles], [d.lift for d in e.deciles], marker="o", label=name
        )
    if capacity is not None:
        weekly.axhline(capacity, color="black", linestyle="--", label=f"capacity {capacity}")
    weekly.set_xticks(range(len(weeks)), weeks, rotation=45, ha="right", fontsize=7)
    weekly.set_title(f"{chosen} crossings per week")
    weekly.legend()
    lifts.axhline(1.0, color="grey", linewidth=0.8)
    lifts.set_xticks(range(1, 11))
    lifts.set_xlabel("peak-score decile (1 = top tenth)")
    lifts.set_title("lift: outcome rate over the overall rate")
    lifts.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
