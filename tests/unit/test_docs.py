"""The README cannot rot: its settings table and rules example are checked."""

from __future__ import annotations

import re
from pathlib import Path

from leadscore.config import describe_settings
from leadscore.scoring import parse_rules

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_documented_with_its_default() -> None:
    for env, default, _ in describe_settings():
        assert f"| `{env}` | `{default}` |" in README, f"{env} missing from the README table"


def test_the_rules_example_in_the_readme_is_the_shipped_example_and_valid() -> None:
    block = re.search(r"```yaml\n(.*?)```", README, re.DOTALL)
    assert block is not None
    shipped = (ROOT / "examples" / "rules.yaml").read_text(encoding="utf-8")
    assert block.group(1) == shipped, "README's rules example differs from examples/rules.yaml"
    rules = parse_rules(block.group(1), "README.md")
    assert rules.stage_for(61) == "qualified"
    assert [t.name for t in rules.thresholds] == ["mql", "sql"]


def test_the_readme_gives_the_two_commands_on_its_first_screen() -> None:
    first_screen = "\n".join(README.splitlines()[:20])
    assert "make demo" in first_screen
    assert "make test" in first_screen
