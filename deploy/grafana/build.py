"""Writes the Grafana dashboards in deploy/grafana/dashboards/ from the panel lists below.

    python deploy/grafana/build.py          # rewrite the JSON files
    python deploy/grafana/build.py --check  # exit 1 if a file differs (the unit tests do this)

Every query here is executed against a real Prometheus by
tests/integration/test_prometheus.py and must return data there.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "leadscore-prometheus"}
HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"
RATE = "$__rate_interval"
CROSSINGS = 'leadscore_actions_total{kind="threshold_crossed"}'


@dataclass(frozen=True)
class Panel:
    title: str
    queries: list[tuple[str, str]]  # (PromQL, legend)
    kind: str = "timeseries"  # timeseries | stat | bargauge
    unit: str = "short"
    description: str = ""
    width: int = 12
    stack: bool = False
    options: dict[str, Any] = field(default_factory=dict)


def panel_json(panel: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    height = 5 if panel.kind == "stat" else 8
    custom: dict[str, Any] = {}
    if panel.kind == "timeseries":
        custom = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 30 if panel.stack else 0,
            "stacking": {"mode": "normal" if panel.stack else "none", "group": "A"},
            "showPoints": "never",
        }
    return {
        "id": pid,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit, "custom": custom}, "overrides": []},
        "options": panel.options,
        "targets": [
            {
                "datasource": DATASOURCE,
                "expr": expr,
                "legendFormat": legend,
                "refId": chr(ord("A") + i),
            }
            for i, (expr, legend) in enumerate(panel.queries)
        ],
    }


def dashboard(uid: str, title: str, description: str, panels: list[Panel]) -> dict[str, Any]:
    laid_out = []
    x = y = row_height = 0
    for pid, panel in enumerate(panels, start=1):
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        item = panel_json(panel, pid, x, y)
        laid_out.append(item)
        x += panel.width
        row_height = max(row_height, item["gridPos"]["h"])
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["leadscore"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": laid_out,
    }


def quantiles(metric: str, selector: str, by: str = "") -> list[tuple[str, str]]:
    group = f"le{', ' + by if by else ''}"
    suffix = f" {{{{{by}}}}}" if by else ""
    matcher = f"{{{selector}}}" if selector else ""
    return [
        (
            f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{matcher}[{RATE}])))",
            f"p{int(q * 100)}{suffix}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


EXECUTIVE = dashboard(
    "leadscore-executive",
    "leadscore / executive",
    "Where the leads stand and how fast they become MQLs.",
    [
        Panel(
            "Leads by stage",
            [("sum by (stage) (leadscore_leads)", "{{stage}}")],
            kind="bargauge",
            options={"orientation": "horizontal", "displayMode": "gradient"},
            description="Every lead in its current stage (decay included), over all workers.",
        ),
        Panel(
            "Leads by stage over time",
            [("sum by (stage) (leadscore_leads)", "{{stage}}")],
            stack=True,
        ),
        Panel(
            "Threshold crossings in the last 24 h",
            [
                (
                    f"sum by (name) (increase({CROSSINGS}[24h]))",
                    "{{name}}",
                )
            ],
            kind="stat",
            width=8,
        ),
        Panel(
            "Median time to threshold (last 7 days)",
            [
                (
                    "histogram_quantile(0.5, sum by (le, threshold) "
                    "(increase(leadscore_time_to_threshold_seconds_bucket[7d])))",
                    "{{threshold}}",
                )
            ],
            kind="stat",
            unit="s",
            width=8,
            description="Event time from a lead's first event to the crossing (e.g. time to MQL).",
        ),
        Panel(
            "Leads scored in the last 24 h",
            [('sum(increase(leadscore_events_total{outcome="scored"}[24h]))', "events")],
            kind="stat",
            width=8,
        ),
        Panel(
            "Threshold crossings per hour",
            [
                (
                    f"sum by (name) (increase({CROSSINGS}[1h]))",
                    "{{name}}",
                )
            ],
        ),
        Panel(
            "Stage changes per hour",
            [
                (
                    'sum by (name) (increase(leadscore_actions_total{kind="stage_changed"}[1h]))',
                    "to {{name}}",
                )
            ],
        ),
        Panel(
            "Time to threshold: p50 and p90 (last 7 days)",
            [
                (
                    f"histogram_quantile({q}, sum by (le, threshold) "
                    "(increase(leadscore_time_to_threshold_seconds_bucket[7d])))",
                    f"p{int(q * 100)} {{{{threshold}}}}",
                )
                for q in (0.5, 0.9)
            ],
            unit="s",
            width=24,
        ),
    ],
)

ONCALL = dashboard(
    "leadscore-oncall",
    "leadscore / on-call",
    "Is the worker keeping up? Lag, latency, failures, readiness and rebalances.",
    [
        Panel(
            "Workers ready",
            [("sum(leadscore_ready)", "ready"), ('count(up{job="leadscore-worker"})', "workers")],
            kind="stat",
            width=6,
        ),
        Panel(
            "Input lag (records)",
            [("leadscore:consumer_lag:sum", "lag")],
            kind="stat",
            width=6,
        ),
        Panel(
            "Failed share (5 m)",
            [("leadscore:events_failed:ratio_rate5m", "dead-lettered")],
            kind="stat",
            unit="percentunit",
            width=6,
        ),
        Panel(
            "Actions slower than 1 s (1 h, SLO 1%)",
            [("leadscore:event_to_action_slow:ratio_rate1h", "slow share")],
            kind="stat",
            unit="percentunit",
            width=6,
        ),
        Panel(
            "Events by outcome",
            [
                (
                    f"sum by (outcome) (rate(leadscore_events_total[{RATE}]))",
                    "{{outcome}}",
                )
            ],
            unit="ops",
        ),
        Panel(
            "Consumer lag per partition",
            [("sum by (partition) (leadscore_consumer_lag)", "partition {{partition}}")],
        ),
        Panel(
            "Event → action latency since ingest",
            quantiles("leadscore_event_to_action_seconds", 'since="ingest"'),
            unit="s",
            description="From the input record's Kafka timestamp to the action being sent.",
        ),
        Panel(
            "Event → action latency since the event",
            quantiles("leadscore_event_to_action_seconds", 'since="event"'),
            unit="s",
            description="From the event's occurred_at (the source's clock) to the action.",
        ),
        Panel(
            "Ingest → score latency",
            quantiles("leadscore_ingest_to_score_seconds", ""),
            unit="s",
        ),
        Panel(
            "Processing time per event",
            quantiles("leadscore_event_processing_seconds", ""),
            unit="s",
        ),
        Panel(
            "Dead letters by reason",
            [
                (
                    f"sum by (reason) (rate(leadscore_dead_letters_total[{RATE}]))",
                    "{{reason}}",
                )
            ],
            unit="ops",
        ),
        Panel(
            "Identity and privacy",
            [
                (f"sum(rate(leadscore_merges_total[{RATE}]))", "merges"),
                (
                    f"sum by (kind) (rate(leadscore_handoffs_total[{RATE}]))",
                    "hand-offs: {{kind}}",
                ),
                (f"sum(rate(leadscore_erasures_total[{RATE}]))", "erasures"),
                (
                    "sum by (outcome) (rate(leadscore_events_total"
                    f'{{outcome=~"frozen|suppressed"}}[{RATE}]))',
                    "events {{outcome}}",
                ),
            ],
            unit="ops",
            description="Merges (identify, merge), records handed to another contact's "
            "partition, erasures carried out, and events dropped for withdrawn consent or "
            "erased contacts (docs/identity.md, docs/privacy.md).",
        ),
        Panel(
            "Queue depth (input lag + sink lag + in flight)",
            [("leadscore:queue_depth:sum", "records")],
        ),
        Panel(
            "Ready, partitions and recovery per worker",
            [
                ("leadscore_ready", "ready {{instance}}"),
                ("leadscore_assigned_partitions", "partitions {{instance}}"),
                ("leadscore_recovery_remaining_records", "to recover {{instance}}"),
            ],
        ),
        Panel(
            "Rebalances per hour",
            [("sum by (instance) (increase(leadscore_rebalances_total[1h]))", "{{instance}}")],
        ),
        Panel(
            "Versions",
            [
                (
                    "count by (version, rules_version) (leadscore_build_info)",
                    "{{version}} rules {{rules_version}}",
                )
            ],
            kind="stat",
            width=24,
        ),
    ],
)

SINKS = dashboard(
    "leadscore-sinks",
    "leadscore / sinks",
    "Routing and notification delivery: outcomes, retries, circuits, latency.",
    [
        Panel(
            "Deliveries by outcome",
            [
                (
                    f"sum by (endpoint, outcome) (rate(leadscore_sink_deliveries_total[{RATE}]))",
                    "{{endpoint}} {{outcome}}",
                )
            ],
            unit="ops",
        ),
        Panel(
            "Retries per endpoint",
            [
                (
                    f"sum by (endpoint) (rate(leadscore_sink_delivery_attempts_total[{RATE}])) "
                    "- sum by (endpoint) (rate(leadscore_sink_deliveries_total"
                    f'{{outcome!="duplicate_suppressed"}}[{RATE}]))',
                    "{{endpoint}}",
                )
            ],
            unit="ops",
            description="HTTP attempts beyond the first of each finished delivery.",
        ),
        Panel(
            "Circuit state (0 closed, 1 half-open, 2 open)",
            [("max by (sink, endpoint) (leadscore_sink_circuit_state)", "{{sink}} {{endpoint}}")],
        ),
        Panel(
            "Action → delivery latency",
            quantiles("leadscore_sink_action_to_delivery_seconds", "", by="sink"),
            unit="s",
        ),
        Panel(
            "Sink lag and in flight",
            [
                ("sum by (sink) (leadscore_sink_consumer_lag)", "lag {{sink}}"),
                ("sum by (sink) (leadscore_sink_in_flight)", "in flight {{sink}}"),
            ],
        ),
        Panel(
            "Sink dead letters by reason",
            [
                (
                    f"sum by (sink, reason) (rate(leadscore_sink_dead_letters_total[{RATE}]))",
                    "{{sink}} {{reason}}",
                )
            ],
            unit="ops",
        ),
        Panel(
            "Assignments by team and strategy",
            [
                (
                    f"sum by (team, strategy) (rate(leadscore_sink_assignments_total[{RATE}]))",
                    "{{team}} {{strategy}}",
                )
            ],
            unit="ops",
        ),
        Panel(
            "Routing p99 (action → assignment)",
            [("leadscore:routing_seconds:p99_5m", "p99")],
            unit="s",
        ),
    ],
)

ACCOUNTS = dashboard(
    "leadscore-accounts",
    "leadscore / accounts",
    "Accounts: engagement rolled up from their contacts, stages and account actions.",
    [
        Panel(
            "Accounts by stage",
            [("sum by (stage) (leadscore_accounts)", "{{stage}}")],
            kind="bargauge",
            options={"orientation": "horizontal", "displayMode": "gradient"},
            description="Every account in its stage (decay included), over all workers.",
        ),
        Panel(
            "Accounts by stage over time",
            [("sum by (stage) (leadscore_accounts)", "{{stage}}")],
            stack=True,
        ),
        Panel(
            "Top accounts' engagement",
            [("topk(10, max by (account) (leadscore_top_account_engagement))", "{{account}}")],
            description="The most engaged accounts: engagement (the sum of their contacts' "
            "decayed scores) now. Each worker reports its 10 most engaged.",
            width=24,
        ),
        Panel(
            "Account actions per hour",
            [
                (
                    f"sum by (kind, name) (rate(leadscore_account_actions_total[{RATE}])) * 3600",
                    "{{kind}} {{name}}",
                )
            ],
            description="Account stage changes and threshold crossings, as an hourly rate.",
        ),
        Panel(
            "Contact updates read by the account agent",
            [
                (
                    f"sum by (outcome) (rate(leadscore_account_updates_total[{RATE}]))",
                    "{{outcome}}",
                )
            ],
            unit="ops",
            description="applied: a contact's new share of its account; duplicate: a share "
            "the account already had (a replay), counted once.",
        ),
    ],
)

DASHBOARDS = {
    "accounts.json": ACCOUNTS,
    "executive.json": EXECUTIVE,
    "oncall.json": ONCALL,
    "sinks.json": SINKS,
}


def rendered(board: dict[str, Any]) -> str:
    return json.dumps(board, indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare with the files")
    args = parser.parse_args()
    stale = []
    for name, board in DASHBOARDS.items():
        path = OUT / name
        text = rendered(board)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        sys.stderr.write(f"out of date: {', '.join(stale)}; run python deploy/grafana/build.py\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
