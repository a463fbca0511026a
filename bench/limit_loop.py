"""The practical limit: consume -> JSON decode -> dict update -> produce, nothing else.

    python bench/limit_loop.py BOOTSTRAP GROUP INPUT_TOPIC OUTPUT_TOPIC

The least a Python scorer on Kafka must do per event, with confluent-kafka
(librdkafka) on both ends and their default settings: no framework, no
RocksDB, no changelog, no validation. Each event adds its type's points to an
in-memory per-contact total and one record (event id, contact, total) is
produced, keyed by contact. Offsets are auto-committed. Runs until SIGTERM.
It waits for one record at a time and then takes what is already fetched, so
it neither waits for a batch to fill (latency) nor polls one record at a time
when busy (throughput).
"""

from __future__ import annotations

import signal
import sys

import orjson
from confluent_kafka import Consumer, Producer

POINTS = {"page_view": 1, "email_open": 3, "download": 10, "signup": 20, "demo_request": 30}


def main() -> None:
    bootstrap, group, source, sink = sys.argv[1:5]
    running = True

    def stop(*_: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest"}
    )
    producer = Producer({"bootstrap.servers": bootstrap})
    consumer.subscribe([source])
    scores: dict[str, float] = {}
    while running:
        # Wait for one record, then take what else is already fetched: batches when
        # busy, no wait for a batch to fill when not.
        first = consumer.poll(0.1)
        if first is None:
            continue
        for message in [first, *consumer.consume(499, timeout=0)]:
            value = message.value()
            if message.error() or value is None:
                continue
            event = orjson.loads(value)
            contact = event["contact_id"]
            score = scores.get(contact, 0.0) + POINTS.get(event["type"], 0)
            scores[contact] = score
            out = {"event_id": event["event_id"], "contact_id": contact, "score": score}
            while True:
                try:
                    producer.produce(sink, key=message.key(), value=orjson.dumps(out))
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.poll(0)
    producer.flush(30)
    consumer.close()


if __name__ == "__main__":
    main()
