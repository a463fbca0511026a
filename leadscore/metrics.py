"""Prometheus metrics of a worker, served at ``GET /metrics``.

Counted at the edges (the agent and the web layer), never inside scoring/.
Label values come from small fixed sets or from the rules file (action
names), never from contact ids.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, Info, disable_created_metrics
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from leadscore import __version__

disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series: half the series, nothing dashboards use

EVENTS = Counter(
    "leadscore_events",
    "Input records handled, by outcome (scored, duplicate, dead_lettered)",
    ["outcome"],
)
DEAD_LETTERS = Counter(
    "leadscore_dead_letters", "Records sent to the dead-letter topic, by reason", ["reason"]
)
ACTIONS = Counter("leadscore_actions", "Actions emitted, by kind and name", ["kind", "name"])
API_REQUESTS = Counter(
    "leadscore_api_requests", "HTTP requests answered, by route and status", ["route", "status"]
)
API_LATENCY = Histogram(
    "leadscore_api_request_duration_seconds",
    "Time to answer an HTTP request, by route and whether it was forwarded to the owner",
    ["route", "served"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
BUILD = Info("leadscore_build", "Version of leadscore and of the rules in use")


def set_build_info(rules_version: str) -> None:
    BUILD.info({"version": __version__, "rules_version": rules_version})


def exposition() -> tuple[bytes, str]:
    """The text format body and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


# The action sinks (`leadscore sink ...`), each process serving its own port.
SINK_DELIVERIES = Counter(
    "leadscore_sink_deliveries",
    "Deliveries by outcome (delivered, dead_lettered, duplicate_suppressed)",
    ["sink", "endpoint", "outcome"],
)
SINK_ATTEMPTS = Counter(
    "leadscore_sink_delivery_attempts",
    "HTTP requests made (or refused by an open circuit)",
    ["sink", "endpoint"],
)
SINK_LATENCY = Histogram(
    "leadscore_sink_action_to_delivery_seconds",
    "From the action's emitted_at to its successful delivery",
    ["sink", "endpoint"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
SINK_DEAD_LETTERS = Counter(
    "leadscore_sink_dead_letters",
    "Actions written to the sink dead-letter topic, by reason",
    ["sink", "reason"],
)
SINK_CIRCUIT = Gauge(
    "leadscore_sink_circuit_state",
    "Circuit breaker per endpoint: 0 closed, 1 half-open, 2 open",
    ["sink", "endpoint"],
)
SINK_IN_FLIGHT = Gauge("leadscore_sink_in_flight", "Actions consumed, not yet finished", ["sink"])
SINK_ASSIGNMENTS = Counter(
    "leadscore_sink_assignments",
    "Assignments written by the routing sink, by team and strategy (replayed: from the memo)",
    ["team", "strategy"],
)
