"""Creating and checking leadscore's topics with confluent-kafka's admin client."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # re-exported at runtime, not declared in its stubs

from leadscore.config import Settings
from leadscore.errors import BrokerUnavailable, TopicsMissing

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True)
class TopicSpec:
    name: str
    config: dict[str, str]


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """leadscore's own topics and how they are kept (Faust's changelog topics come on top)."""
    delete = {"cleanup.policy": "delete"}
    return [
        TopicSpec(settings.events_topic, {**delete, "retention.ms": str(7 * DAY_MS)}),
        TopicSpec(settings.actions_topic, {**delete, "retention.ms": str(30 * DAY_MS)}),
        TopicSpec(settings.lead_state_topic, {"cleanup.policy": "compact"}),
        TopicSpec(settings.score_changes_topic, {**delete, "retention.ms": str(30 * DAY_MS)}),
        TopicSpec(settings.dlq_topic, {**delete, "retention.ms": str(30 * DAY_MS)}),
        TopicSpec(settings.assignments_topic, {**delete, "retention.ms": str(30 * DAY_MS)}),
        TopicSpec(settings.sink_dlq_topic, {**delete, "retention.ms": str(30 * DAY_MS)}),
        TopicSpec(settings.ticks_topic, {**delete, "retention.ms": str(HOUR_MS)}),
        TopicSpec(settings.handoff_topic, {**delete, "retention.ms": str(7 * DAY_MS)}),
        TopicSpec(settings.privacy_topic, {"cleanup.policy": "compact"}),
        TopicSpec(settings.privacy_receipts_topic, {"cleanup.policy": "compact"}),
        TopicSpec(settings.account_updates_topic, {**delete, "retention.ms": str(7 * DAY_MS)}),
        TopicSpec(settings.account_state_topic, {"cleanup.policy": "compact"}),
        TopicSpec(settings.account_actions_topic, {**delete, "retention.ms": str(30 * DAY_MS)}),
    ]


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient(settings.confluent_config())


def cluster_metadata(settings: Settings, timeout: float = 10.0) -> Any:
    """The cluster's metadata, or BrokerUnavailable if it does not answer."""
    try:
        return admin_client(settings).list_topics(timeout=timeout)
    except KafkaException as exc:
        raise BrokerUnavailable(
            f"no answer from Kafka at {settings.bootstrap_servers} within {timeout:g} s"
        ) from exc


def partition_counts(metadata: Any) -> dict[str, int]:
    """Topic name -> partition count, from cluster metadata."""
    return {name: len(t.partitions) for name, t in metadata.topics.items()}


def existing_topics(settings: Settings, timeout: float = 10.0) -> dict[str, int]:
    """Topic name -> partition count."""
    return partition_counts(cluster_metadata(settings, timeout))


def create_topics(settings: Settings, timeout: float = 30.0) -> dict[str, str]:
    """Create the topics that do not exist yet; returns topic -> 'created' or 'exists'."""
    return _create(settings, topic_specs(settings), settings.partitions, timeout)


def _create(
    settings: Settings, specs: list[TopicSpec], partitions: int, timeout: float
) -> dict[str, str]:
    have = existing_topics(settings)
    outcome = {spec.name: "exists" for spec in specs if spec.name in have}
    wanted = [
        NewTopic(
            spec.name,
            num_partitions=partitions,
            replication_factor=settings.replication_factor,
            config=spec.config,
        )
        for spec in specs
        if spec.name not in have
    ]
    if wanted:
        admin = admin_client(settings)  # must outlive the futures it returns
        futures = admin.create_topics(wanted, operation_timeout=timeout)
        for name, future in futures.items():
            try:
                future.result()
                outcome[name] = "created"
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" in str(exc):
                    outcome[name] = "exists"
                else:
                    raise
    return outcome


def ensure_changelogs(
    settings: Settings, specs: list[TopicSpec], partitions: int, timeout: float = 60.0
) -> dict[str, str]:
    """Create the worker's changelog topics if missing; return once the broker serves them.

    Faust creates its changelog topics itself, moments before its consumer joins
    the group. On a broker that has just started, a topic created that late can
    be missing from the metadata the group's assignment is computed from: Faust
    then assigns none of its partitions, and the first write to that table fails
    with PartitionsMismatch ("... has 0 partitions"). Created here, and waited
    for until every partition has a leader, the topics are there before Faust
    starts, and Faust finds them existing.
    """
    outcome = _create(settings, specs, partitions, timeout)
    names = [spec.name for spec in specs]
    deadline = time.monotonic() + timeout
    while True:
        topics = cluster_metadata(settings).topics
        for name in names:
            topic = topics.get(name)
            if topic is not None and topic.partitions and len(topic.partitions) != partitions:
                raise TopicsMissing(
                    f"{name} has {len(topic.partitions)} partitions and "
                    f"{settings.events_topic} {partitions}: a table's changelog must match "
                    "its source topic"
                )
        pending = [name for name in names if not _served(topics.get(name), partitions)]
        if not pending:
            return outcome
        if time.monotonic() > deadline:
            raise TopicsMissing(
                f"changelog topics not served by {settings.bootstrap_servers} within "
                f"{timeout:g} s of their creation: {', '.join(pending)}"
            )
        time.sleep(0.2)


def _served(topic: Any, partitions: int) -> bool:
    """Whether topic metadata shows ``partitions`` partitions, each with a leader."""
    if topic is None or topic.error is not None or len(topic.partitions) != partitions:
        return False
    return all(p.leader >= 0 and p.error is None for p in topic.partitions.values())


def _check_present(settings: Settings, have: dict[str, int], needed: list[str]) -> None:
    missing = [name for name in needed if name not in have]
    if missing:
        raise TopicsMissing(
            f"topics missing on {settings.bootstrap_servers}: {', '.join(missing)}; "
            "create them with `leadscore topics create`"
        )


def require_sink_topics(settings: Settings, *names: str) -> None:
    """Check the topics a sink reads and writes exist."""
    _check_present(settings, partition_counts(cluster_metadata(settings)), list(names))


def require_topics(settings: Settings) -> tuple[str, dict[str, int]]:
    """Check the worker's topics exist; return the cluster id and their partition counts."""
    metadata = cluster_metadata(settings)
    have = partition_counts(metadata)
    sinks_only = {settings.assignments_topic, settings.sink_dlq_topic}
    needed = [s.name for s in topic_specs(settings) if s.name not in sinks_only]
    _check_present(settings, have, needed)
    events = have[settings.events_topic]
    why = {
        settings.ticks_topic: "a tick for partition N re-assesses the leads of events partition N",
        settings.handoff_topic: "a hand-off record for a contact must reach the partition "
        "that holds its lead",
        settings.privacy_topic: "an erase request for a contact must reach the partition "
        "that holds its lead",
        settings.account_updates_topic: "the account agent's table is co-partitioned with it",
    }
    for topic, reason in why.items():
        if have[topic] != events:
            raise TopicsMissing(
                f"{topic} has {have[topic]} partitions and {settings.events_topic} {events}: "
                f"they must match, because {reason}"
            )
    return str(metadata.cluster_id), {name: have[name] for name in needed}
