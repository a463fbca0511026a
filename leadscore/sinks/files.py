"""What the sinks' files share: reading YAML into a pydantic model, and action patterns."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from leadscore.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def load_model(path: Path, model: type[M]) -> M:
    """The validated file, or ConfigError naming the file and each problem's place."""
    try:
        return model.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from exc


#: The kinds of account actions (leadscore.account-actions) start with this.
ACCOUNT_KINDS = "account_"


def wants_action(patterns: Iterable[str], kind: str, name: str) -> bool:
    """Whether ``kind:name`` matches one of the shell-style patterns ("threshold_crossed:*").

    Account actions match only patterns that name them ("account_*", "account_threshold_
    crossed:surge"): a sink set up for lead actions ("*") is not sent account actions.
    """
    account = kind.startswith(ACCOUNT_KINDS)
    return any(
        fnmatch.fnmatchcase(f"{kind}:{name}", p)
        for p in patterns
        if p.startswith(ACCOUNT_KINDS) == account
    )


def wants_accounts(patterns: Iterable[str]) -> bool:
    """Whether any pattern names account actions (the sink then reads account-actions too)."""
    return any(p.startswith(ACCOUNT_KINDS) for p in patterns)
