"""The metrics kept outside the hot path: stage census, worker collector, sink lag."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from leadscore.metrics import REGISTRY, SINK_LAG, WorkerCollector, WorkerView, sink_lag_stats
from leadscore.step.wheel import Timers

STAGES = ["cold", "warm", "hot", "qualified"]


@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 40), st.sampled_from(STAGES)), max_size=200
    )
)
def test_census_counts_every_lead_once_in_its_latest_stage(moves: list[tuple[int, int, str]]):
    census = Timers(1000)
    where: dict[int, tuple[int, str]] = {}  # lead -> (partition, stage)
    for partition, lead, stage in moves:
        partition = where.get(lead, (partition, ""))[0]  # a lead stays in its partition
        census.move(partition, where[lead][1] if lead in where else None, stage)
        where[lead] = (partition, stage)
    for partition in range(4):
        expected = {s: 0 for s in STAGES}
        for p, stage in where.values():
            if p == partition:
                expected[stage] += 1
        assert census.census([partition], STAGES) == expected
    assert sum(census.census(range(4), STAGES).values()) == len(where)


def test_census_totals_only_the_partitions_asked_and_lists_every_stage():
    census = Timers(1000)
    census.move(0, None, "warm")
    census.move(1, None, "hot")
    census.move(1, "hot", "qualified")
    assert census.census([1], STAGES) == {"cold": 0, "warm": 0, "hot": 0, "qualified": 1}
    assert census.census([], STAGES) == dict.fromkeys(STAGES, 0)
    census.move(0, "warm", "warm")  # no change, no write needed
    assert census.stages[0] == {"warm": 1}


def scrape(collector: WorkerCollector) -> str:
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


def test_worker_collector_exposes_the_view_and_nothing_before_the_worker_runs():
    assert scrape(WorkerCollector(lambda: None)) == ""
    view = WorkerView(
        ready=True,
        stages={"cold": 3, "hot": 1},
        partitions=2,
        lag={("leadscore.events", 1): 7, ("leadscore.events", 0): 0},
        recovery_remaining=0,
        rebalances=2,
    )
    text = scrape(WorkerCollector(lambda: view))
    for line in [
        "leadscore_ready 1.0",
        'leadscore_leads{stage="cold"} 3.0',
        'leadscore_leads{stage="hot"} 1.0',
        "leadscore_assigned_partitions 2.0",
        'leadscore_consumer_lag{partition="1",topic="leadscore.events"} 7.0',
        'leadscore_consumer_lag{partition="0",topic="leadscore.events"} 0.0',
        "leadscore_recovery_remaining_records 0.0",
        "leadscore_rebalances_total 2.0",
    ]:
        assert line in text.splitlines(), line


def lag_of(sink: str) -> dict[str, float]:
    return {
        sample.labels["partition"]: sample.value
        for metric in REGISTRY.collect()
        if metric.name == "leadscore_sink_consumer_lag"
        for sample in metric.samples
        if sample.labels["sink"] == sink
    }


def test_sink_lag_follows_librdkafka_stats_and_drops_revoked_partitions():
    on_stats = sink_lag_stats("unit")
    partitions = {
        "0": {"consumer_lag": 5},
        "1": {"consumer_lag": -1},  # not assigned
        "2": {"consumer_lag": 0},
        "-1": {"consumer_lag": -1},  # librdkafka's internal partition
    }
    on_stats(json.dumps({"topics": {"leadscore.actions": {"partitions": partitions}}}))
    assert lag_of("unit") == {"0": 5.0, "2": 0.0}
    on_stats(
        json.dumps({"topics": {"leadscore.actions": {"partitions": {"2": {"consumer_lag": 9}}}}})
    )
    assert lag_of("unit") == {"2": 9.0}
    SINK_LAG.remove("unit", "2")
