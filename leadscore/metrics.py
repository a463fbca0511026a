"""Prometheus metrics of a worker, served at ``GET /metrics``.

Counted at the edges (the agent and the web layer), never inside scoring/.
Label values come from small fixed sets or from the rules file (action
names), never from contact ids.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Histogram, Info, disable_created_metrics
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
