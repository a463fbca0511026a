"""Pure lead scoring: rules, lead records, apply_event. No Kafka, Faust, clock or environment."""

from leadscore.scoring.engine import Applied, apply_event, apply_tick, new_lead, next_due, snapshot
from leadscore.scoring.events import EngagementEvent
from leadscore.scoring.records import LeadAction, LeadRecord, LeadState, Reason, ScoreChange
from leadscore.scoring.rules import Rules, load_rules, parse_rules

__all__ = [
    "Applied",
    "EngagementEvent",
    "LeadAction",
    "LeadRecord",
    "LeadState",
    "Reason",
    "Rules",
    "ScoreChange",
    "apply_event",
    "apply_tick",
    "load_rules",
    "new_lead",
    "next_due",
    "parse_rules",
    "snapshot",
]
