"""The rules model: which events score how many points, stages, thresholds, decay.

Rules come from a YAML file validated by pydantic. Errors name the file, the
line and what was expected, so the person editing the rules can fix them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from leadscore.errors import RuleProblem, RulesError

DEFAULT_RULES_PATH = Path(__file__).resolve().parent.parent / "rules" / "default.yaml"

MS_PER_HOUR = 3_600_000
MS_PER_DAY = 24 * MS_PER_HOUR

Identifier = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[a-z][a-z0-9_.:-]*$")]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Rule(_Frozen):
    """Points for one event type. ``id`` is stable: it names the rule in every explanation."""

    id: Identifier
    event_type: Identifier
    points: float = Field(allow_inf_nan=False)


class Stage(_Frozen):
    """A stage a lead is in while its score is at least ``min_score`` (and below the next)."""

    name: Identifier
    min_score: float = Field(allow_inf_nan=False)


class Threshold(_Frozen):
    """Fires once when the score rises to ``score``; re-arms below ``score - hysteresis``."""

    name: Identifier
    score: float = Field(gt=0, allow_inf_nan=False)
    hysteresis: float = Field(ge=0, allow_inf_nan=False)

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


class Rules(_Frozen):
    """A complete, validated scoring configuration."""

    version: Annotated[str, Field(min_length=1, max_length=64)]
    half_life_days: float = Field(default=30, gt=0, allow_inf_nan=False)
    velocity_window_hours: int = Field(default=24, gt=0, le=24 * 31)
    dedupe_horizon_days: float = Field(default=7, gt=0)
    dedupe_max_ids: int = Field(default=1000, ge=1, le=1_000_000)
    rules: tuple[Rule, ...]
    stages: tuple[Stage, ...]
    thresholds: tuple[Threshold, ...] = ()
    risk: Risk = Risk()
    next_actions: dict[str, str] = Field(default_factory=dict)
    next_action_when_high_risk: str = "re_engage"
    _by_type: dict[str, tuple[Rule, ...]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Rules:
        ids = [r.id for r in self.rules]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"rule ids must be unique; repeated: {', '.join(dupes)}")
        if not self.stages:
            raise ValueError("at least one stage is needed")
        mins = [s.min_score for s in self.stages]
        if mins != sorted(mins) or len(set(mins)) != len(mins):
            raise ValueError("stages must be listed by strictly increasing min_score")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError("stage names must be unique")
        tnames = [t.name for t in self.thresholds]
        if len(set(tnames)) != len(tnames):
            raise ValueError("threshold names must be unique")
        unknown = sorted(set(self.next_actions) - set(names))
        if unknown:
            raise ValueError(f"next_actions names unknown stages: {', '.join(unknown)}")
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

    def rules_for(self, event_type: str) -> tuple[Rule, ...]:
        """The rules an event type matches (empty for unknown types: they score 0)."""
        return self._by_type.get(event_type, ())

    def stage_for(self, score: float) -> str:
        """The stage whose band holds ``score`` (below the lowest band: the lowest stage)."""
        current = self.stages[0].name
        for stage in self.stages:
            if score >= stage.min_score:
                current = stage.name
            else:
                break
        return current

    def next_action_for(self, stage: str, risk: str) -> str:
        if risk == "high":
            return self.next_action_when_high_risk
        return self.next_actions.get(stage, "none")

    def decay_factor(self, elapsed_ms: float) -> float:
        """How much of a score survives ``elapsed_ms`` of event time (1.0 for none)."""
        if elapsed_ms <= 0:
            return 1.0
        return math.pow(2.0, -elapsed_ms / self.half_life_ms)


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
        problems = [
            RuleProblem(source, _line_of(node, err["loc"]), _dotted(err["loc"]), _message(err))
            for err in exc.errors()
        ]
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
        return "unknown field; check its spelling against the rules format in the README"
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
