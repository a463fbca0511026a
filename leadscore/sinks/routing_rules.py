"""Routing: which owner gets a lead, decided from the action and the routing state alone.

Order of strategies for an action the routes want:

1. account stickiness: a lead whose account already has an owner gets that owner (an
   account action, ``account_*`` patterns, assigns the account an owner the same way,
   with its top contact as the contact to reach);
2. rules on the lead's traits (territory, segment, size ...; first match wins) pick a team;
3. round-robin over the team's members, skipping members at their capacity for the day
   (the UTC day of the action's ``emitted_at``);
4. when every member is at capacity, the team's overflow queue.

``decide`` is pure: it reads a state mapping and returns the Assignment and the
state writes that go with it. The same action over the same state gives the
same assignment. An action already assigned (found in the state's memo) gives
back its recorded assignment, so re-processing after a crash or a replay yields
the same owner. The state is also rebuilt from Assignment records alone
(``absorb``), e.g. from the assignments topic when the local store is lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from leadscore.scoring.rules import Condition
from leadscore.sinks.files import load_model, wants_action


class Member(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=200)
    capacity_per_day: int | None = Field(None, ge=0, description="None: no limit")


class Team(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    members: list[Member] = Field(min_length=1)
    overflow_queue: str = Field(min_length=1, description="Owner when every member is full")

    @model_validator(mode="after")
    def _unique_members(self) -> Team:
        ids = [m.id for m in self.members]
        if len(ids) != len(set(ids)):
            raise ValueError(f"team {self.name}: member ids must be unique")
        return self


class TeamRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    team: str
    when: list[Condition] = Field(default_factory=list, description="All must hold; none: always")


class RoutingConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    actions: list[str] = Field(
        min_length=1,
        description='"kind:name" patterns of the actions to route, e.g. "threshold_crossed:sql"',
    )
    sticky_accounts: bool = True
    teams: list[Team] = Field(min_length=1)
    rules: list[TeamRule] = Field(min_length=1)

    @model_validator(mode="after")
    def _known_teams(self) -> RoutingConfig:
        names = [t.name for t in self.teams]
        if len(names) != len(set(names)):
            raise ValueError("team names must be unique")
        unknown = sorted({r.team for r in self.rules} - set(names))
        if unknown:
            raise ValueError(f"rules name unknown teams: {', '.join(unknown)}")
        if self.rules[-1].when:
            raise ValueError("the last rule must have no conditions: it is the default team")
        return self

    def wants(self, kind: str, name: str) -> bool:
        return wants_action(self.actions, kind, name)

    def team(self, name: str) -> Team:
        return next(t for t in self.teams if t.name == name)


def load_routing_config(path: Path) -> RoutingConfig:
    return load_model(path, RoutingConfig)


# -- state keys ---------------------------------------------------------------------------


class State(Protocol):
    """What deciding reads of the routing state: a dict in tests, RocksDB in the sink."""

    def get(self, key: bytes, /) -> Any: ...


def memo_key(action_id: str) -> bytes:
    return b"m:" + action_id.encode()


def account_key(account_id: str) -> bytes:
    return b"a:" + account_id.encode()


def cursor_key(team: str) -> bytes:
    return b"r:" + team.encode()


def load_key(day: str, owner: str) -> bytes:
    return f"l:{day}:{owner}".encode()


def contact_key(contact_id: str, action_id: str) -> bytes:
    """Index of the memo by contact, for erasure (``contact_prefix`` finds them all)."""
    return contact_prefix(contact_id) + action_id.encode()


def contact_prefix(contact_id: str) -> bytes:
    return b"c:" + contact_id.encode() + b"\x1f"


def time_key(assigned_at: int, action_id: str) -> bytes:
    """Index of the memo by time, for pruning."""
    return f"t:{assigned_at:013d}:".encode() + action_id.encode()


def _int(state: State, key: bytes) -> int:
    raw = state.get(key)
    return int(raw) if raw is not None else 0


@dataclass(frozen=True)
class Decision:
    assignment: dict[str, Any]
    writes: dict[bytes, bytes]
    replayed: bool  # found in the memo: assigned before


def day_of(ms: int) -> str:
    """The UTC day (YYYY-MM-DD) an epoch-ms time falls in: the day capacity is counted in."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def absorb(assignment: dict[str, Any], state: State) -> dict[bytes, bytes]:
    """The state writes an assignment stands for (used when deciding and when rebuilding)."""
    writes = {
        memo_key(assignment["action_id"]): orjson.dumps(assignment),
        time_key(assignment["assigned_at"], assignment["action_id"]): b"",
        contact_key(assignment["contact_id"], assignment["action_id"]): b"",
    }
    owner, day = assignment["owner"], assignment["day"]
    if not assignment["queue"]:
        if assignment["account_id"]:
            writes[account_key(assignment["account_id"])] = owner.encode()
        key = load_key(day, owner)
        writes[key] = str(_int(state, key) + 1).encode()
    if assignment["rr_position"] is not None:
        key = cursor_key(assignment["team"])
        writes[key] = str(max(_int(state, key), assignment["rr_position"] + 1)).encode()
    return writes


def decide(action: dict[str, Any], config: RoutingConfig, state: State) -> Decision | None:
    """The assignment for an action (None: the routes do not want it)."""
    if not config.wants(action["kind"], action["name"]):
        return None
    recorded = state.get(memo_key(action["action_id"]))
    if recorded is not None:
        return Decision(orjson.loads(recorded), {}, replayed=True)

    day = day_of(int(action["emitted_at"]))
    if "contact_id" not in action:  # an account action: the contact to reach is its top one
        top = action.get("top_contacts") or []
        action = {**action, "contact_id": top[0]["contact_id"] if top else ""}
    traits: dict[str, str] = dict(action.get("traits") or {})
    if action.get("account_id"):
        traits.setdefault("account_id", action["account_id"])
    if action.get("grade"):
        traits.setdefault("grade", action["grade"])

    owner: str | None = None
    strategy = "round_robin"
    position: int | None = None
    queue = False
    team_name = next(r.team for r in config.rules if all(c.holds(traits) for c in r.when))
    sticky = state.get(account_key(action["account_id"])) if action.get("account_id") else None
    if config.sticky_accounts and sticky is not None:
        owner, strategy = sticky.decode(), "sticky_account"
        team_name = next(
            (t.name for t in config.teams if any(m.id == owner for m in t.members)), team_name
        )
    else:
        team = config.team(team_name)
        start = _int(state, cursor_key(team.name))
        for step in range(len(team.members)):
            member = team.members[(start + step) % len(team.members)]
            used = _int(state, load_key(day, member.id))
            if member.capacity_per_day is None or used < member.capacity_per_day:
                owner, position = member.id, start + step
                break
        if owner is None:
            owner, strategy, queue = team.overflow_queue, "overflow", True

    assignment = {
        "assignment_id": action["action_id"],
        "action_id": action["action_id"],
        "contact_id": action["contact_id"],
        "account_id": action.get("account_id"),
        "owner": owner,
        "team": team_name,
        "queue": queue,
        "strategy": strategy,
        "rr_position": position,
        "day": day,
        "assigned_at": int(action["emitted_at"]),
        "action_kind": action["kind"],
        "action_name": action["name"],
        "score": action["score"],
        "grade": action.get("grade"),
    }
    return Decision(assignment, absorb(assignment, state), replayed=False)
