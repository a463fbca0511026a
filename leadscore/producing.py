"""Producing engagement events to Kafka (confluent-kafka), keyed by contact_id."""

from __future__ import annotations

from typing import Any, Literal

import orjson
from confluent_kafka import Producer

from leadscore.codecs.avro import schema
from leadscore.config import Settings

AVRO_DEFAULTS: dict[str, Any] = {
    "account_id": None,
    "anonymous_id": None,
    "source": None,
    "properties": {},
}


class EventProducer:
    """Sends event dicts as JSON or Avro single-object encoding; counts failures."""

    def __init__(self, settings: Settings, wire_format: Literal["json", "avro"] = "json") -> None:
        # murmur2 is the Java client's (and Faust's) key partitioner: a contact lands in the
        # partition every other Kafka client, and Faust's key routing, expects.
        self.producer = Producer(
            {
                **settings.confluent_config(),
                "linger.ms": 5,
                "enable.idempotence": True,
                "partitioner": "murmur2_random",
            }
        )
        self.topic = settings.events_topic
        self.wire_format = wire_format
        self.failed = 0

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failed += 1

    def encode(self, event: dict[str, Any]) -> bytes:
        if self.wire_format == "avro":
            return schema("EngagementEvent").encode({**AVRO_DEFAULTS, **event})
        return orjson.dumps(event)

    def send(self, event: dict[str, Any], key: str | None = None) -> None:
        value = self.encode(event)
        while True:
            try:
                self.producer.produce(
                    self.topic,
                    key=key or str(event.get("contact_id", "")),
                    value=value,
                    on_delivery=self._delivered,
                )
                break
            except BufferError:
                self.producer.poll(0.1)  # local queue full: let deliveries drain, then retry
        self.producer.poll(0)

    def flush(self, timeout: float = 30.0) -> int:
        """Wait for deliveries; returns the number of records still undelivered."""
        return int(self.producer.flush(timeout))
