"""What an endpoint receives for an action: a Slack message or the action as JSON."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson

from leadscore.scoring.events import visible


def _escape(text: str) -> str:
    """Slack's three control characters in message text, and no control or format
    characters (a bidi override would reverse the rest of the message)."""
    return visible(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _why(action: dict[str, Any], top: int = 3) -> str:
    reasons = sorted(action.get("reasons") or [], key=lambda r: -abs(r.get("points", 0)))[:top]
    return ", ".join(f"{r['rule_id']} {r['points']:g}" for r in reasons) or "no scoring events"


def _account_text(action: dict[str, Any]) -> str:
    account = _escape(action["account_id"])
    kind, name = action["kind"], action["name"]
    headline = {
        "account_threshold_crossed": f"crossed *{name}*",
        "account_stage_changed": f"moved to *{name}*",
    }.get(kind, f"{kind} {name}")
    top = ", ".join(
        f"{_escape(c['contact_id'])} {c['score']:g}" for c in action.get("top_contacts") or []
    )
    return (
        f"Account *{account}* {headline}: engagement {action['score']:g} "
        f"(was {action['previous_score']:g}), stage {action['previous_stage']} → "
        f"{action['stage']}. Contacts to reach: {top or 'none'}."
    )


def slack_body(action: dict[str, Any], link_template: str | None) -> bytes:
    """A Slack incoming-webhook message: who, score, why, and a link to the lead (an
    account action: the account, its engagement and its top contacts)."""
    if "account_id" in action and "contact_id" not in action:
        text = _account_text(action)
        return orjson.dumps(
            {
                "text": text,
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
            }
        )
    contact = _escape(action["contact_id"])
    kind, name = action["kind"], action["name"]
    headline = {
        "threshold_crossed": f"crossed *{name}*",
        "stage_changed": f"moved to *{name}*",
        "disqualified": f"was disqualified ({name})",
    }.get(kind, f"{kind} {name}")
    text = (
        f"*{contact}* {headline}: score {action['score']:g} "
        f"(was {action['previous_score']:g}), stage {action['previous_stage']} → "
        f"{action['stage']}. Why: {_why(action)}."
    )
    if action.get("grade"):
        text += f" Fit {action.get('fit', 0):g} (grade {action['grade']})."
    if link_template:
        url = link_template.format(contact_id=quote(action["contact_id"], safe=""))
        text += f" <{url}|Open the lead>"
    return _message(text)


def _message(text: str) -> bytes:
    return orjson.dumps(
        {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}
    )


def webhook_body(action: dict[str, Any]) -> bytes:
    """The action record as JSON (the same fields as on leadscore.actions)."""
    return orjson.dumps(action)
