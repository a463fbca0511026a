"""The rules model: which events score how many points, stages, thresholds, decay.

Rules come from a YAML file validated by pydantic. Errors name the file, the
line and what was expected, so the person editing the rules can fix them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Self

import re2
import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from leadscore.errors import LeadscoreError, RuleProblem, RulesError

DEFAULT_RULES_PATH = Path(__file__).resolve().parent.parent / "rules" / "default.yaml"

MS_PER_HOUR = 3_600_000
MS_PER_DAY = 24 * MS_PER_HOUR
DISQUALIFIED = "disqualified"

Identifier = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[a-z][a-z0-9_.:-]*$")]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy; with ``update``, validated again like a new model.

        Models here keep indexes derived from their fields (rules by event type,
        caps by rule, fit traits, compiled regexes). pydantic's plain copy keeps
        the old indexes beside the new fields; validating again rebuilds them and
        checks the changed model as a rules file would be checked.
        """
        if not update:
            return super().model_copy(deep=deep)
        return self.model_validate({**self.model_dump(), **update})


PropertyName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")]
GradeName = Annotated[
    str, Field(min_length=1, max_length=20, pattern=r"^[A-Za-z0-9][A-Za-z0-9_+-]*$")
]
Points = Annotated[float, Field(allow_inf_nan=False)]

STRING_TESTS = ("equals", "one_of", "prefix", "suffix", "contains", "regex", "exists")
NUMBER_TESTS = ("gt", "gte", "lt", "lte")


# Regex conditions run on RE2: matching time is linear in the input, whatever the
# pattern (no catastrophic backtracking on a producer-controlled value), and the
# value is cut to its first REGEX_INPUT_CHARS characters before matching.
REGEX_INPUT_CHARS = 4096


def _compile_regex(pattern: str, case_sensitive: bool) -> Any:
    """An RE2 pattern, or a message saying why RE2 refuses it (backreferences, lookaround)."""
    options = re2.Options()
    options.log_errors = False  # RE2 would print the error to stderr as well
    options.case_sensitive = case_sensitive
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        why = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(
            f"the regex {pattern!r} is not valid for RE2, the linear-time engine rules use "
            f"({why}); backreferences and lookaround are not supported"
        ) from exc


def _as_tuple(value: str | tuple[str, ...] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else value


class Condition(_Frozen):
    """One test on one event property; a rule's conditions must all hold.

    String tests ignore case unless ``case_sensitive`` is true. Numeric tests
    (gt, gte, lt, lte; combinable into a range) read the property as a number;
    a property that is missing or not a number does not match.
    """

    property: PropertyName
    equals: str | None = None
    one_of: tuple[str, ...] | None = Field(default=None, min_length=1)
    prefix: str | tuple[str, ...] | None = None
    suffix: str | tuple[str, ...] | None = None
    contains: str | None = None
    regex: str | None = None
    exists: bool | None = None
    gt: Points | None = None
    gte: Points | None = None
    lt: Points | None = None
    lte: Points | None = None
    case_sensitive: bool = False
    _pattern: Any = PrivateAttr(default=None)  # re2._Regexp (google-re2 ships no types)
    _choices: frozenset[str] = PrivateAttr(default=frozenset())

    @model_validator(mode="after")
    def _one_test(self) -> Condition:
        strings = [name for name in STRING_TESTS if getattr(self, name) is not None]
        numbers = [name for name in NUMBER_TESTS if getattr(self, name) is not None]
        every = ", ".join(STRING_TESTS + NUMBER_TESTS)
        if not strings and not numbers:
            raise ValueError(f"the condition on {self.property!r} needs a test: one of {every}")
        if len(strings) > 1 or (strings and numbers):
            raise ValueError(
                f"the condition on {self.property!r} has several tests "
                f"({', '.join(strings + numbers)}); use one condition per test"
            )
        low = max((v for v in (self.gt, self.gte) if v is not None), default=None)
        high = min((v for v in (self.lt, self.lte) if v is not None), default=None)
        if low is not None and high is not None:
            empty = low > high or (low == high and (self.gt is not None or self.lt is not None))
            if empty:
                raise ValueError(
                    f"the range on {self.property!r} is empty (no number is above {low:g} "
                    f"and below {high:g}): the rule could never match"
                )
        if self.regex is not None:
            self._pattern = _compile_regex(self.regex, self.case_sensitive)
        for name in ("prefix", "suffix"):
            if any(not v for v in _as_tuple(getattr(self, name))):
                raise ValueError(f"an empty {name} matches everything; use exists: true instead")
        return self

    def model_post_init(self, context: Any, /) -> None:
        if self.one_of is not None:
            self._choices = frozenset(self._fold(v) for v in self.one_of)

    def _fold(self, value: str) -> str:
        return value if self.case_sensitive else value.casefold()

    def holds(self, properties: Mapping[str, str]) -> bool:
        value = properties.get(self.property)
        if self.exists is not None:
            return (value is not None) == self.exists
        if value is None:
            return False
        if self._pattern is not None:
            return self._pattern.search(value[:REGEX_INPUT_CHARS]) is not None
        if any(getattr(self, name) is not None for name in NUMBER_TESTS):
            return self._in_range(value)
        folded = self._fold(value)
        if self.equals is not None:
            return folded == self._fold(self.equals)
        if self.one_of is not None:
            return folded in self._choices
        if self.prefix is not None:
            return any(folded.startswith(self._fold(p)) for p in _as_tuple(self.prefix))
        if self.suffix is not None:
            return any(folded.endswith(self._fold(p)) for p in _as_tuple(self.suffix))
        return self.contains is not None and self._fold(self.contains) in folded

    def _in_range(self, value: str) -> bool:
        try:
            number = float(value)
        except ValueError:
            return False
        if math.isnan(number):
            return False
        return (
            (self.gt is None or number > self.gt)
            and (self.gte is None or number >= self.gte)
            and (self.lt is None or number < self.lt)
            and (self.lte is None or number <= self.lte)
        )


def all_hold(conditions: tuple[Condition, ...], properties: Mapping[str, str]) -> bool:
    return all(c.holds(properties) for c in conditions)


class Rule(_Frozen):
    """Points for events of one type whose properties meet every condition in ``when``.

    ``id`` is stable: it names the rule in every explanation. ``replaces`` lists
    rules of the same event type that do not score when this one matches (so a
    pricing-page view scores 15 *instead of* the 1 of any page view).
    """

    id: Identifier
    event_type: Identifier
    points: Points
    when: tuple[Condition, ...] = ()
    replaces: tuple[Identifier, ...] = ()

    def matches(self, properties: Mapping[str, str]) -> bool:
        return all_hold(self.when, properties)


class Cap(_Frozen):
    """At most ``max_points`` from ``rules`` in any ``window_days`` of event time."""

    id: Identifier
    rules: tuple[Identifier, ...] = Field(min_length=1)
    max_points: float = Field(gt=0, allow_inf_nan=False)
    window_days: float = Field(gt=0, le=366, allow_inf_nan=False)

    @property
    def window_ms(self) -> int:
        return int(self.window_days * MS_PER_DAY)


class FitRule(_Frozen):
    """Fit points for a lead whose profile traits meet every condition in ``when``."""

    id: Identifier
    when: tuple[Condition, ...] = Field(min_length=1)
    points: Points


class Grade(_Frozen):
    """A fit grade: a lead has the best grade whose ``min_fit`` its fit score reaches."""

    name: GradeName
    min_fit: Points


class Fit(_Frozen):
    """Fit scoring: traits from profile events, scored by rules, banded into grades.

    Fit does not decay. A trait keeps the value of the latest event (event time)
    that carried it.
    """

    event_types: tuple[Identifier, ...] = ("identify",)
    rules: tuple[FitRule, ...] = ()
    grades: tuple[Grade, ...] = ()

    _traits: frozenset[str] = PrivateAttr(default=frozenset())

    def model_post_init(self, context: Any, /) -> None:
        self._traits = frozenset(c.property for rule in self.rules for c in rule.when)

    @property
    def traits(self) -> frozenset[str]:
        """The traits fit rules name: the only ones a lead keeps."""
        return self._traits


class StateRule(_Frozen):
    """A rule that disqualifies (or re-qualifies) a lead: an event type and/or conditions."""

    id: Identifier
    event_type: Identifier | None = None
    when: tuple[Condition, ...] = ()

    @model_validator(mode="after")
    def _not_everything(self) -> StateRule:
        if self.event_type is None and not self.when:
            raise ValueError(
                f"rule {self.id!r} has neither an event_type nor conditions, so it would "
                "match every event; give it at least one of them"
            )
        return self

    def matches(self, event_type: str, properties: Mapping[str, str]) -> bool:
        if self.event_type is not None and event_type != self.event_type:
            return False
        return all_hold(self.when, properties)


class Stage(_Frozen):
    """A stage a lead is in while its score is at least ``min_score`` (and below the next)."""

    name: Identifier
    min_score: float = Field(allow_inf_nan=False)


class Threshold(_Frozen):
    """Fires once when the score rises to ``score``; re-arms below ``score - hysteresis``.

    With ``min_grade`` it fires only while the lead's fit grade is at least that
    good: ``mql: engagement >= 60 and grade >= B``.
    """

    name: Identifier
    score: float = Field(gt=0, allow_inf_nan=False)
    hysteresis: float = Field(ge=0, allow_inf_nan=False)
    min_grade: GradeName | None = None

    @model_validator(mode="after")
    def _hysteresis_below_score(self) -> Threshold:
        if self.hysteresis > self.score:
            raise ValueError(
                f"hysteresis {self.hysteresis:g} is larger than the threshold score "
                f"{self.score:g}: the threshold could never re-arm"
            )
        return self


class Risk(_Frozen):
    """Risk by recency: low until ``medium_after_days`` idle, high after ``high_after_days``."""

    medium_after_days: float = Field(default=3, gt=0)
    high_after_days: float = Field(default=7, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Risk:
        if self.high_after_days < self.medium_after_days:
            raise ValueError("high_after_days must not be smaller than medium_after_days")
        return self


#: Identifiers trackers send when they have none: merging on one would join strangers.
BLOCKED_IDS = ("null", "undefined", "anonymous", "unknown", "none", "nil", "0", "-1", "n/a")


class Identity(_Frozen):
    """Merge safety (Segment-style limits): what an identify or merge may join.

    A lead absorbs at most ``max_merges_per_week`` other contacts in any 7 days of
    event time, and never one whose id is in ``blocked_ids`` (compared case-blind).
    """

    max_merges_per_week: int = Field(default=20, ge=1, le=10_000)
    blocked_ids: tuple[str, ...] = BLOCKED_IDS

    def blocked(self, contact_id: str) -> bool:
        folded = contact_id.strip().casefold()
        return any(folded == b.casefold() for b in self.blocked_ids)


class Accounts(_Frozen):
    """Account scoring (``leadscore.scoring.accounts``): an account's engagement is the sum
    of its contacts' decayed scores, with stages and thresholds of its own.

    No stages: accounts are not scored. ``engaged_floor``: a contact counts as engaged
    while its current score is at least this. ``persona_trait``: the trait whose
    distinct values among engaged contacts make the buying-group coverage.
    ``track_contacts``: how many contacts (the highest scores) an account keeps by name,
    for its top contacts, engaged count and coverage.
    """

    stages: tuple[Stage, ...] = ()
    thresholds: tuple[Threshold, ...] = ()
    engaged_floor: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    persona_trait: Identifier | None = None
    track_contacts: int = Field(default=50, ge=1, le=1000)

    @property
    def enabled(self) -> bool:
        return bool(self.stages)

    def stage_for(self, score: float) -> str:
        """The stage whose band holds ``score`` (below the lowest band: the lowest stage)."""
        current = self.stages[0].name
        for stage in self.stages[1:]:
            if score < stage.min_score:
                break
            current = stage.name
        return current


class Rules(_Frozen):
    """A complete, validated scoring configuration."""

    version: Annotated[str, Field(min_length=1, max_length=64)]
    half_life_days: float = Field(default=30, gt=0, allow_inf_nan=False)
    velocity_window_hours: int = Field(default=24, gt=0, le=24 * 31)
    dedupe_horizon_days: float = Field(default=7, gt=0)
    dedupe_max_ids: int = Field(default=1000, ge=1, le=1_000_000)
    rules: tuple[Rule, ...]
    caps: tuple[Cap, ...] = ()
    fit: Fit = Fit()
    disqualify: tuple[StateRule, ...] = ()
    requalify: tuple[StateRule, ...] = ()
    stages: tuple[Stage, ...]
    thresholds: tuple[Threshold, ...] = ()
    risk: Risk = Risk()
    next_actions: dict[str, str] = Field(default_factory=dict)
    next_action_when_high_risk: str = "re_engage"
    identity: Identity = Identity()
    accounts: Accounts = Accounts()
    _by_type: dict[str, tuple[Rule, ...]] = PrivateAttr(default_factory=dict)
    _cap_of: dict[str, Cap] = PrivateAttr(default_factory=dict)
    _grade_rank: dict[str, int] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Rules:
        problems = _cross_checks(self)
        if problems:
            raise RulesProblems(problems)
        return self

    @property
    def half_life_ms(self) -> float:
        return self.half_life_days * MS_PER_DAY

    @property
    def velocity_window_ms(self) -> int:
        return self.velocity_window_hours * MS_PER_HOUR

    @property
    def dedupe_horizon_ms(self) -> int:
        return int(self.dedupe_horizon_days * MS_PER_DAY)

    def model_post_init(self, context: Any, /) -> None:
        index: dict[str, list[Rule]] = {}
        for rule in self.rules:
            index.setdefault(rule.event_type, []).append(rule)
        self._by_type = {k: tuple(v) for k, v in index.items()}
        self._cap_of = {rule_id: cap for cap in self.caps for rule_id in cap.rules}
        self._grade_rank = {g.name: i for i, g in enumerate(self.fit.grades)}

    def rules_for(self, event_type: str) -> tuple[Rule, ...]:
        """The rules an event type may match (empty for unknown types: they score 0)."""
        return self._by_type.get(event_type, ())

    def matching(self, event_type: str, properties: Mapping[str, str]) -> list[Rule]:
        """The rules that score an event: those whose conditions hold, minus replaced ones."""
        hits = [r for r in self.rules_for(event_type) if r.matches(properties)]
        replaced = {other for r in hits for other in r.replaces}
        return [r for r in hits if r.id not in replaced] if replaced else hits

    def cap_of(self, rule_id: str) -> Cap | None:
        return self._cap_of.get(rule_id)

    def stage_for(self, score: float) -> str:
        """The stage whose band holds ``score`` (below the lowest band: the lowest stage)."""
        current = self.stages[0].name
        for stage in self.stages:
            if score >= stage.min_score:
                current = stage.name
            else:
                break
        return current

    def grade_for(self, fit: float) -> str | None:
        """The best grade whose band ``fit`` reaches (None when no grades are defined)."""
        current: str | None = self.fit.grades[0].name if self.fit.grades else None
        for grade in self.fit.grades:
            if fit >= grade.min_fit:
                current = grade.name
            else:
                break
        return current

    def grade_at_least(self, grade: str | None, wanted: str | None) -> bool:
        if wanted is None:
            return True
        if grade is None:
            return False
        return self._grade_rank.get(grade, -1) >= self._grade_rank[wanted]

    def next_action_for(self, stage: str, risk: str) -> str:
        if stage == DISQUALIFIED:
            return self.next_actions.get(DISQUALIFIED, "none")
        if risk == "high":
            return self.next_action_when_high_risk
        return self.next_actions.get(stage, "none")

    def decay_factor(self, elapsed_ms: float) -> float:
        """How much of a score survives ``elapsed_ms`` of event time (1.0 for none)."""
        if elapsed_ms <= 0:
            return 1.0
        return math.pow(2.0, -elapsed_ms / self.half_life_ms)

    def digest(self) -> str:
        """A fingerprint of the rules' content, to notice a change without a new version."""
        canonical = self.model_dump_json(exclude={"version"})
        return hashlib.blake2b(canonical.encode("utf-8"), digest_size=8).hexdigest()


class RulesProblems(LeadscoreError, ValueError):
    """Problems found across fields, each with where it is (a pydantic-style location).

    A ``ValueError`` too: pydantic collects only those from a validator."""

    def __init__(self, problems: list[tuple[tuple[Any, ...], str]]) -> None:
        super().__init__("; ".join(message for _, message in problems))
        self.problems = problems


def _cross_checks(rules: Rules) -> list[tuple[tuple[Any, ...], str]]:
    """What single fields cannot tell: ids, references between sections, band order."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    by_id = {r.id: r for r in rules.rules}
    sections: list[tuple[str, tuple[Any, ...]]] = [
        ("rules", rules.rules),
        ("fit.rules", rules.fit.rules),
        ("disqualify", rules.disqualify),
        ("requalify", rules.requalify),
        ("caps", rules.caps),
    ]
    first_seen: dict[str, str] = {}
    for section, items in sections:
        for i, item in enumerate(items):
            loc = (*section.split("."), i, "id")
            if item.id in first_seen:
                problems.append(
                    (
                        loc,
                        f"the id {item.id!r} is already used in {first_seen[item.id]}; ids name "
                        "rules in explanations, so each must be unique",
                    )
                )
            else:
                first_seen[item.id] = section
    for i, rule in enumerate(rules.rules):
        for j, other in enumerate(rule.replaces):
            loc = ("rules", i, "replaces", j)
            target = by_id.get(other)
            if target is None:
                problems.append((loc, f"rule {rule.id!r} replaces {other!r}, which is not a rule"))
            elif other == rule.id:
                problems.append((loc, f"rule {rule.id!r} replaces itself"))
            elif target.event_type != rule.event_type:
                problems.append(
                    (
                        loc,
                        f"rule {rule.id!r} ({rule.event_type}) replaces {other!r}, which scores "
                        f"{target.event_type} events: a rule can only replace one of its own type",
                    )
                )
    capped: dict[str, str] = {}
    for i, cap in enumerate(rules.caps):
        for j, rule_id in enumerate(cap.rules):
            loc = ("caps", i, "rules", j)
            target = by_id.get(rule_id)
            if target is None:
                problems.append((loc, f"cap {cap.id!r} names {rule_id!r}, which is not a rule"))
            elif target.points <= 0:
                problems.append(
                    (
                        loc,
                        f"cap {cap.id!r} names {rule_id!r}, which gives {target.points:g} points; "
                        "caps limit rules that add points",
                    )
                )
            elif rule_id in capped:
                problems.append(
                    (
                        loc,
                        f"rule {rule_id!r} is in two caps ({capped[rule_id]!r} and {cap.id!r}); "
                        "put it in one",
                    )
                )
            else:
                capped[rule_id] = cap.id
    if not rules.stages:
        problems.append((("stages",), "at least one stage is needed"))
    problems += _ascending(
        ("stages",),
        rules.stages,
        "min_score",
        "stage",
        "the bands overlap. List stages from the lowest min_score up, each higher than the "
        "one before",
    )
    problems += _listed_once(("stages",), rules.stages, "stage")
    for i, stage in enumerate(rules.stages):
        if stage.name == DISQUALIFIED:
            problems.append(
                (
                    ("stages", i, "name"),
                    f"{DISQUALIFIED!r} is the stage of disqualified leads; name this stage "
                    "differently",
                )
            )
    grades = rules.fit.grades
    problems += _ascending(
        ("fit", "grades"),
        grades,
        "min_fit",
        "grade",
        "list grades from the worst (lowest min_fit) to the best",
    )
    problems += _listed_once(("fit", "grades"), grades, "grade")
    grade_names = [g.name for g in grades]
    problems += _listed_once(("thresholds",), rules.thresholds, "threshold")
    for i, threshold in enumerate(rules.thresholds):
        if threshold.min_grade is not None and threshold.min_grade not in grade_names:
            known = ", ".join(grade_names) or "none are defined under fit.grades"
            problems.append(
                (
                    ("thresholds", i, "min_grade"),
                    f"threshold {threshold.name!r} needs grade {threshold.min_grade!r}, which is "
                    f"not a fit grade ({known})",
                )
            )
    problems += _account_checks(rules.accounts)
    persona = rules.accounts.persona_trait
    if persona is not None and persona not in rules.fit.traits:
        kept = ", ".join(sorted(rules.fit.traits)) or "none: no fit rules"
        problems.append(
            (
                ("accounts", "persona_trait"),
                f"persona_trait {persona!r} is not a trait the fit rules read, so no lead keeps "
                f"it (kept: {kept})",
            )
        )
    names = {stage.name for stage in rules.stages}
    for unknown in sorted(set(rules.next_actions) - names - {DISQUALIFIED}):
        problems.append(
            (("next_actions", unknown), f"next_actions names an unknown stage {unknown!r}")
        )
    return problems


Named = Stage | Grade | Threshold


def _ascending(
    where: tuple[str, ...],
    items: Sequence[Stage] | Sequence[Grade],
    field: str,
    noun: str,
    hint: str,
) -> list[tuple[tuple[Any, ...], str]]:
    """Bands listed from the lowest up, each above the one before."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    for i in range(1, len(items)):
        low, high = items[i - 1], items[i]
        if getattr(high, field) <= getattr(low, field):
            problems.append(
                (
                    (*where, i, field),
                    f"{noun} {high.name!r} starts at {getattr(high, field):g}, not above "
                    f"{low.name!r} ({getattr(low, field):g}): {hint}",
                )
            )
    return problems


def _listed_once(
    where: tuple[str, ...], items: Sequence[Named], noun: str
) -> list[tuple[tuple[Any, ...], str]]:
    names = [item.name for item in items]
    return [
        ((*where, i, "name"), f"{noun} {item.name!r} is listed twice")
        for i, item in enumerate(items)
        if names.index(item.name) != i
    ]


def _account_checks(accounts: Accounts) -> list[tuple[tuple[Any, ...], str]]:
    stages = accounts.stages
    problems = _ascending(
        ("accounts", "stages"),
        stages,
        "min_score",
        "account stage",
        "list account stages from the lowest min_score up",
    )
    problems += _listed_once(("accounts", "stages"), stages, "account stage")
    problems += _listed_once(("accounts", "thresholds"), accounts.thresholds, "account threshold")
    for i, threshold in enumerate(accounts.thresholds):
        if threshold.min_grade is not None:
            problems.append(
                (
                    ("accounts", "thresholds", i, "min_grade"),
                    "accounts have no fit grade: leave min_grade out of account thresholds",
                )
            )
    if accounts.thresholds and not stages:
        problems.append(
            (
                ("accounts", "thresholds"),
                "account thresholds need account stages (accounts.stages): without them "
                "accounts are not scored",
            )
        )
    return problems


def parse_rules(text: str, source: str = "<rules>") -> Rules:
    """Parse and validate rules YAML; raise RulesError listing every problem with its line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise RulesError(
            source, [RuleProblem(source, line, "", f"not valid YAML: {problem}")]
        ) from exc
    if not isinstance(data, dict):
        raise RulesError(source, [RuleProblem(source, 1, "", "the rules file must be a mapping")])
    try:
        return Rules.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            cause = (err.get("ctx") or {}).get("error")
            found = cause.problems if isinstance(cause, RulesProblems) else [(err["loc"], None)]
            for where, message in found:
                loc = (*err["loc"], *where)
                problems.append(
                    RuleProblem(source, _line_of(node, loc), _dotted(loc), message or _message(err))
                )
        raise RulesError(source, problems) from exc


def load_rules(path: Path | None = None) -> Rules:
    """Load rules from ``path`` (the packaged defaults when None)."""
    target = path or DEFAULT_RULES_PATH
    try:
        text = target.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(
            str(target), [RuleProblem(str(target), None, "", f"cannot read: {exc}")]
        ) from exc
    return parse_rules(text, str(target))


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


def _message(err: Any) -> str:
    msg = str(err["msg"])
    if err["type"] == "extra_forbidden":
        return "unknown field; check its spelling against the rules format in docs/rules.md"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if "input" in err and err["type"] not in ("missing",) and not isinstance(err["input"], dict):
        return f"{msg} (got {err['input']!r})"
    return msg


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML node at ``loc``, or of its closest existing parent."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    child = value
                    line = key.start_mark.line + 1
                    break
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            return line
        node = child
    return line
