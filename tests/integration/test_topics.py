"""Topic creation on a real broker: changelogs exist and are served before Faust starts."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported at runtime
    AdminClient,
    ConfigResource,
    NewTopic,
)

from leadscore.errors import TopicsMissing
from leadscore.kafka_admin import TopicSpec, ensure_changelogs
from leadscore.scoring import load_rules
from leadscore.stream.app import CHANGELOG_COMPACTION, build_app, changelog_specs
from tests.support.brokers import client_config
from tests.support.deployments import Deployment


def test_changelogs_are_created_compacted_and_served(deployment: Deployment) -> None:
    settings = deployment.settings()
    specs = changelog_specs(build_app(settings, load_rules(settings.rules_file), partitions=3))
    names = sorted(spec.name for spec in specs)
    assert names == [f"{settings.app_id}-{table}-changelog" for table in ("accounts", "leads")]

    outcome = ensure_changelogs(settings, specs, partitions=3)
    assert outcome == {name: "created" for name in names}
    admin = AdminClient(client_config(deployment.bootstrap))
    topics = admin.list_topics(timeout=10).topics
    assert {name: len(topics[name].partitions) for name in names} == dict.fromkeys(names, 3)
    resource = ConfigResource(ConfigResource.Type.TOPIC, names[0])
    config = admin.describe_configs([resource])[resource].result(10)
    assert config["cleanup.policy"].value == "compact"
    # Rolled and cleaned often, so recovery reads about one record per lead.
    for setting, value in CHANGELOG_COMPACTION.items():
        assert config[setting].value == value, setting
    # A second start finds them there.
    assert ensure_changelogs(settings, specs, partitions=3) == dict.fromkeys(names, "exists")


def test_a_changelog_with_another_partition_count_is_refused(deployment: Deployment) -> None:
    settings = deployment.settings()
    name = f"{settings.app_id}-leads-changelog"
    admin = AdminClient(client_config(deployment.bootstrap))
    admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)])[name].result(30)
    with pytest.raises(TopicsMissing, match="has 2 partitions"):
        ensure_changelogs(settings, [TopicSpec(name, {"cleanup.policy": "compact"})], 3)
