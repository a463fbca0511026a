"""Sending timer ticks: one small record per owned partition of the ticks topic.

Ticks go through a plain confluent-kafka producer, outside Faust's producer:
a tick is only a trigger (a lost or repeated tick changes nothing, the next one
visits the same due slots), and under exactly_once Faust's transactional
producer has no transaction to put a send from a timer into.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import orjson
from confluent_kafka import KafkaError, Message, Producer

from leadscore.config import Settings

log = logging.getLogger("leadscore.timer")

TICK_KEY = b"tick"


class Ticker:
    def __init__(self, settings: Settings) -> None:
        self.topic = settings.ticks_topic
        self._producer: Producer | None = None
        self._config: dict[str, Any] = {
            **settings.confluent_config(),
            "linger.ms": 0,
            "acks": 1,
            "message.timeout.ms": int(max(settings.timer_interval_seconds, 5) * 1000),
        }
        self.sent = 0

    def send(self, partitions: Iterable[int], now_ms: int) -> None:
        if self._producer is None:
            self._producer = Producer(self._config)
        value = orjson.dumps({"at": now_ms})
        for partition in sorted(partitions):
            self._producer.produce(
                self.topic, key=TICK_KEY, value=value, partition=partition, on_delivery=_report
            )
            self.sent += 1
        self._producer.poll(0)


def _report(error: KafkaError | None, message: Message) -> None:
    if error is not None:
        log.warning(
            "tick to %s[%s] not delivered: %s (the next tick covers it)",
            message.topic(),
            message.partition(),
            error,
        )
