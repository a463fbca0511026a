"""Pure lead scoring: rules, lead records, apply_event. No Kafka, Faust, clock or environment."""

from leadscore.scoring.engine import Applied, apply_event, new_lead, snapshot
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
    "load_rules",
    "new_lead",
    "parse_rules",
    "snapshot",
]
