"""The benchmark workload: a seeded, reproducible engagement stream, and its sizes.

Contacts come from leadscore's traffic model: most browse (page views, email
opens), some are curious, a few buy (signups, pricing, demo requests), and
contacts' activity is Pareto-distributed. Hot contacts (1%, 4x the weight)
burst: each draw of one is 2 to 8 events within a minute of event time, so
they bring about a fifth of the events. Event
ids are drawn from the seed too, so the same seed gives byte-identical records.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from common import progress
from confluent_kafka import Producer

from leadscore.simulate import TrafficModel

DAY_MS = 86_400_000


@dataclass(frozen=True)
class Size:
    name: str
    events: int
    contacts: int
    repeat: int  # drain runs per system
    live_seconds: float  # length of each offered-rate step of the latency runs


SIZES = {
    "smoke": Size("smoke", events=6_000, contacts=1_500, repeat=1, live_seconds=6),
    "standard": Size("standard", events=1_000_000, contacts=100_000, repeat=3, live_seconds=30),
    "large": Size("large", events=10_000_000, contacts=1_000_000, repeat=1, live_seconds=30),
}


class Workload:
    """Seeded events; ``contacts`` ids are ``<prefix><n>``."""

    def __init__(self, contacts: int, seed: int, prefix: str) -> None:
        self.model = TrafficModel(
            contacts, seed=seed, prefix=prefix, seeded_ids=True, hot_share=0.01, hot_weight=4.0
        )
        self.rng = self.model.rng

    def events(self, count: int, start_ms: int, span_ms: int) -> Iterator[dict[str, Any]]:
        """``count`` events whose times spread over ``span_ms`` from ``start_ms``."""
        step = span_ms / max(1, count)
        made = 0
        while made < count:
            contact = self.model.pick_contact()
            at = start_ms + int(made * step)
            burst = self.rng.randint(2, 8) if contact.hot else 1
            for _ in range(min(burst, count - made)):
                yield self.model.event_for(contact, at)
                at += self.rng.randint(1_000, 10_000)
                made += 1


def produce(bootstrap: str, topic: str, workload: Workload, count: int, span_ms: int) -> set[str]:
    """Pre-produce ``count`` events ending now, keyed by contact; the contact ids seen."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 50,
            "batch.size": 1_000_000,
            # Idempotence keeps each partition in the order produced when a batch is
            # retried: on a broker that has just started, the first batches to a new
            # topic can fail and land after later ones, and the worker then refuses
            # their events as too late (days older than ones it already scored).
            "enable.idempotence": True,
        }
    )
    contacts: set[str] = set()
    start = int(time.time() * 1000) - span_ms
    for i, event in enumerate(workload.events(count, start, span_ms), start=1):
        contact = event["contact_id"]
        contacts.add(contact)
        while True:
            try:
                producer.produce(topic, key=contact.encode(), value=orjson.dumps(event))
                break
            except BufferError:  # the local queue is full: let deliveries catch up
                producer.poll(0.1)
        if i % 1000 == 0:
            producer.poll(0)
        progress("produce", i, count)
    if producer.flush(120) != 0:
        raise RuntimeError(f"could not deliver the workload to {topic}")
    return contacts
