"""The docs cannot rot: settings reference, rules example and links are checked."""

from __future__ import annotations

import re
import time
from pathlib import Path

from leadscore.config import settings_reference
from leadscore.scoring import parse_rules

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = ROOT / "docs"


def test_the_settings_reference_is_generated_from_the_settings_object() -> None:
    written = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert written == settings_reference(), "docs/configuration.md is stale: run `make docs`"


def test_the_rules_example_in_the_docs_is_the_shipped_example_and_valid() -> None:
    block = re.search(r"```yaml\n(.*?)```", (DOCS / "rules.md").read_text(encoding="utf-8"), re.S)
    assert block is not None
    shipped = (ROOT / "examples" / "rules.yaml").read_text(encoding="utf-8")
    assert block.group(1) == shipped, "docs/rules.md's example differs from examples/rules.yaml"
    rules = parse_rules(block.group(1), "docs/rules.md")
    assert rules.stage_for(61) == "qualified"
    assert [t.name for t in rules.thresholds] == ["mql", "sql"]


def test_the_readme_gives_the_two_commands_on_its_first_screen() -> None:
    first_screen = "\n".join(README.splitlines()[:20])
    assert "make demo" in first_screen
    assert "make test" in first_screen


def test_the_readme_is_short() -> None:
    assert len(README.splitlines()) <= 200


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md")), ROOT / "CHANGELOG.md"]


def test_every_relative_link_in_the_readme_and_docs_resolves() -> None:
    broken = []
    for page in markdown_files():
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"(https?:|mailto:)", target):
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            if not resolved.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, broken


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as dashes."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = set(re.findall(r"\]\(docs/([\w\-]+\.md)", README))
    pages = {p.name for p in DOCS.glob("*.md")}
    assert pages <= linked, f"not linked from the README: {sorted(pages - linked)}"


def test_the_receivers_check_in_the_sinks_docs_accepts_what_the_sink_signs() -> None:
    from leadscore.sinks.signing import sign

    page = (DOCS / "sinks.md").read_text(encoding="utf-8")
    block = re.search(r"```python\n(.*?)```", page, re.S)
    assert block is not None
    namespace: dict[str, object] = {}
    exec(compile(block.group(1), "docs/sinks.md", "exec"), namespace)
    verify = namespace["verify"]
    assert callable(verify)
    now = int(time.time())
    body = b'{"action_id": "a1"}'
    signature = sign(b"secret", now, body)
    assert verify(b"secret", str(now), signature, body)
    assert not verify(b"secret", str(now), signature, body + b" ")
    assert not verify(b"other", str(now), signature, body)
    assert not verify(b"secret", str(now - 301), sign(b"secret", now - 301, body), body)
