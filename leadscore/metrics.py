"""Prometheus metrics of a worker, served at ``GET /metrics``.

Counted at the edges (the agent and the web layer), never inside scoring/.
Label values come from small fixed sets or from the rules file (action
names), never from contact ids.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, Info, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from leadscore import __version__

disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series: half the series, nothing dashboards use

EVENT_OUTCOMES = ("scored", "duplicate", "dead_lettered", "frozen", "suppressed")
EVENTS = Counter(
    "leadscore_events",
    "Input records handled, by outcome (scored, duplicate, dead_lettered, frozen: consent "
    "withdrawn, suppressed: the contact was erased)",
    ["outcome"],
)
for _outcome in EVENT_OUTCOMES:  # every outcome is a series from the start: rate() sees 0
    EVENTS.labels(_outcome)
DEAD_LETTERS = Counter(
    "leadscore_dead_letters", "Records sent to the dead-letter topic, by reason", ["reason"]
)
ACTIONS = Counter("leadscore_actions", "Actions emitted, by kind and name", ["kind", "name"])
ACCOUNT_ACTIONS = Counter(
    "leadscore_account_actions", "Account actions emitted, by kind and name", ["kind", "name"]
)
ACCOUNT_UPDATES = Counter(
    "leadscore_account_updates",
    "Contact shares the account agent read: applied, or duplicate (a version the account "
    "already had: a replay, counted once)",
    ["outcome"],
)
OFF_PARTITION = Counter(
    "leadscore_events_off_partition",
    "Events not on their contact id's murmur2 partition, handed to it before they are "
    "scored: the producer partitions keys differently from Java clients and Faust",
)
ERASURES = Counter(
    "leadscore_erasures",
    "Erase requests carried out (a contact's lead and the contacts merged into it cleared)",
)
MERGES = Counter(
    "leadscore_merges",
    "Leads merged into another (identify with anonymous_id, or merge events)",
)
HANDOFFS = Counter(
    "leadscore_handoffs",
    "Records handed to another contact's partition, by kind (event: off its key's "
    "partition or of a merged contact; absorb and lead: the two steps of a merge)",
    ["kind"],
)
for _kind in ("event", "absorb", "lead"):
    HANDOFFS.labels(_kind)
REWOUND = Counter(
    "leadscore_leads_rewound",
    "Leads whose clock an earlier future-dated event had moved ahead, set back to the "
    "worker's clock at their next event",
)

# Latency buckets in seconds, from a millisecond up to a day (events replayed late).
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0, 3600.0, 86400.0,
)  # fmt: skip
EVENT_TO_ACTION = Histogram(
    "leadscore_event_to_action_seconds",
    "From an event to the action it caused being sent: since the event's occurred_at "
    '(since="event") or since the input record\'s Kafka timestamp (since="ingest")',
    ["since"],
    buckets=LATENCY_BUCKETS,
)
INGEST_TO_SCORE = Histogram(
    "leadscore_ingest_to_score_seconds",
    "From the input record's Kafka timestamp to its score being sent (scored events)",
    buckets=LATENCY_BUCKETS,
)
PROCESSING = Histogram(
    "leadscore_event_processing_seconds",
    "Time the worker spends on one scored input record (decode, score, sends, table writes)",
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0),
)
DAY = 86400.0
TIME_TO_THRESHOLD = Histogram(
    "leadscore_time_to_threshold_seconds",
    "Event time from a lead's first event to its crossing of a threshold (e.g. time to MQL)",
    ["threshold"],
    buckets=(3600.0, 4 * 3600.0, 12 * 3600.0, DAY, 2 * DAY, 3 * DAY, 7 * DAY, 14 * DAY,
             30 * DAY, 60 * DAY, 90 * DAY, 180 * DAY),
)  # fmt: skip
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


#: How many accounts a worker reports by name (leadscore_top_account_engagement).
TOP_ACCOUNTS = 10


class WorkerCollector(Collector):
    """The worker's state read at scrape time: leads by stage, lag, recovery, readiness.

    ``read`` returns a ``WorkerView`` of the worker currently running in this process
    (None before it starts), so the collector is registered once per process.
    """

    def __init__(self, read: Callable[[], WorkerView | None]) -> None:
        self.read = read

    def collect(self) -> Iterable[Metric]:
        view = self.read()
        if view is None:
            return
        yield GaugeMetricFamily(
            "leadscore_ready", "1 when the worker answers /readyz with 200, else 0",
            value=1.0 if view.ready else 0.0,
        )  # fmt: skip
        leads = GaugeMetricFamily(
            "leadscore_leads",
            "Leads by stage in the partitions this worker owns (sum over workers for the total)",
            labels=["stage"],
        )
        for stage, count in view.stages.items():
            leads.add_metric([stage], float(count))
        yield leads
        yield GaugeMetricFamily(
            "leadscore_assigned_partitions",
            "Partitions of the events topic assigned to this worker",
            value=float(view.partitions),
        )
        lag = GaugeMetricFamily(
            "leadscore_consumer_lag",
            "Records in an assigned input partition past the committed offset",
            labels=["topic", "partition"],
        )
        for (topic, partition), records in sorted(view.lag.items()):
            lag.add_metric([topic, str(partition)], float(records))
        yield lag
        yield GaugeMetricFamily(
            "leadscore_recovery_remaining_records",
            "Changelog records still to apply before the worker's tables are recovered",
            value=float(view.recovery_remaining),
        )
        yield CounterMetricFamily(
            "leadscore_rebalances",
            "Consumer group rebalances this worker has taken part in",
            value=float(view.rebalances),
        )
        accounts = GaugeMetricFamily(
            "leadscore_accounts",
            "Accounts by stage in the partitions this worker owns (sum over workers for the total)",
            labels=["stage"],
        )
        for stage, count in view.account_stages.items():
            accounts.add_metric([stage], float(count))
        yield accounts
        top = GaugeMetricFamily(
            "leadscore_top_account_engagement",
            f"Engagement decayed to now of the {TOP_ACCOUNTS} most engaged accounts in the "
            "partitions this worker owns (account ids as labels: at most that many series "
            "per worker)",
            labels=["account"],
        )
        for account, engagement in view.top_accounts:
            top.add_metric([account], engagement)
        yield top


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerView:
    """What the collector reports, filled by the worker at scrape time."""

    ready: bool
    stages: dict[str, int]
    partitions: int
    lag: dict[tuple[str, int], int]  # (topic, partition) -> records
    recovery_remaining: int
    rebalances: int
    account_stages: dict[str, int] = field(default_factory=dict)
    top_accounts: list[tuple[str, float]] = field(default_factory=list)


WORKER = WorkerCollector(lambda: None)  # reports nothing until a worker is built
REGISTRY.register(WORKER)


def watch_worker(read: Callable[[], WorkerView | None]) -> None:
    """Report the worker state ``read`` returns (the latest worker built in this process)."""
    WORKER.read = read


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
    "From the action's emitted_at to its successful delivery (notify: the endpoint's 2xx; "
    "routing: the broker's acknowledgement of the assignment, endpoint = its topic)",
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
SINK_LAG = Gauge(
    "leadscore_sink_consumer_lag",
    "Actions in an assigned partition past the sink's consumed position (librdkafka's view)",
    ["sink", "partition"],
)
SINK_ASSIGNMENTS = Counter(
    "leadscore_sink_assignments",
    "Assignments written by the routing sink, by team and strategy (replayed: from the memo)",
    ["team", "strategy"],
)


def sink_lag_stats(sink: str) -> Callable[[str], None]:
    """A librdkafka ``stats_cb`` that keeps ``leadscore_sink_consumer_lag`` current."""

    shown: set[str] = set()

    def on_stats(raw: str) -> None:
        stats: dict[str, Any] = json.loads(raw)
        lags: dict[str, int] = {}
        for topic in stats.get("topics", {}).values():
            for partition, figures in topic.get("partitions", {}).items():
                lag = figures.get("consumer_lag", -1)
                if partition != "-1" and lag >= 0:
                    lags[partition] = lags.get(partition, 0) + lag
        for gone in shown - lags.keys():  # revoked: no stale series
            SINK_LAG.remove(sink, gone)
        for partition, lag in lags.items():
            SINK_LAG.labels(sink, partition).set(lag)
        shown.clear()
        shown.update(lags)

    return on_stats
