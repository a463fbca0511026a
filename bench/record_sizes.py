"""Records and bytes a worker writes to Kafka per input event, by topic.

    .venv/bin/python bench/record_sizes.py --events 100000 --contacts 10000

A seeded workload (bench/workload.py) is produced and drained by one worker
with default settings (at_least_once); then every topic of the deployment is
read from its start, and its records and their key + value bytes (headers
excluded) are counted, per input event. The changelog is counted as written
(before compaction). Records in bench/results/<date>-record-sizes.{md,json}.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from common import record_results
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from systems import Deployment, drain, start
from workload import DAY_MS, Workload, produce

from tests.support.brokers import ensure_broker, stop_broker


def read_all(bootstrap: str, topic: str) -> tuple[int, int]:
    """(records, key + value bytes) of ``topic`` from its start to its end."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench-sizes", "enable.partition.eof": True}
    )
    partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    pending, records, size = set(partitions), 0, 0
    try:
        while pending:
            for message in consumer.consume(10_000, timeout=5.0):
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(error)
                    pending.discard(message.partition())
                    continue
                records += 1
                size += len(message.key() or b"") + len(message.value() or b"")
    finally:
        consumer.close()
    return records, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    bootstrap, started_broker = ensure_broker()
    counts: dict[str, tuple[int, int]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="leadscore-sizes-") as tmp:
            root = Path(tmp)
            deployment = Deployment.fresh(bootstrap, root / "worker")
            produce(
                bootstrap,
                deployment.events,
                Workload(args.contacts, args.seed, "sizes-"),
                args.events,
                7 * DAY_MS,
            )
            running = start("leadscore", deployment)
            drain(bootstrap, deployment.counted, args.events, 900, running)
            running.finish()
            name = deployment.events.removesuffix(".events")
            topics = [
                t
                for t in AdminClient({"bootstrap.servers": bootstrap})
                .list_topics(timeout=30)
                .topics
                if name in t
            ]
            for topic in sorted(topics):
                counts[topic.replace(name, "<run>")] = read_all(bootstrap, topic)
            deployment.delete_topics()
            shutil.rmtree(deployment.root, ignore_errors=True)
    finally:
        if started_broker:
            stop_broker()
    events = args.events
    written = {t: c for t, c in counts.items() if not t.endswith(".events")}
    rows = [
        "| topic | records | per event | bytes per event | bytes per record |",
        "|---|---|---|---|---|",
        *(
            f"| {topic} | {n:,} | {n / events:.3f} | {b / events:,.0f} | {b / max(1, n):,.0f} |"
            for topic, (n, b) in counts.items()
        ),
        f"| written by the worker | {sum(n for n, _ in written.values()):,} | "
        f"{sum(n for n, _ in written.values()) / events:.3f} | "
        f"{sum(b for _, b in written.values()) / events:,.0f} | |",
        "",
        f"{events:,} events for {args.contacts:,} contacts, one worker (at_least_once); "
        "key + value bytes, headers excluded; the changelog as written, before compaction",
    ]
    record_results(
        "record-sizes",
        "Records and bytes written per input event",
        " ".join(["python bench/record_sizes.py", *sys.argv[1:]]),
        {"events": events, "contacts": args.contacts, "topics": counts},
        "\n".join(rows),
    )


if __name__ == "__main__":
    main()
