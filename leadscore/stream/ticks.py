"""Sending timer ticks: one small record per owned partition of the ticks topic.

Ticks go through a plain confluent-kafka producer, outside Faust's producer:
a tick is only a trigger (a lost or repeated tick changes nothing, the next one
visits the same due slots), and under exactly_once Faust's transactional
producer has no transaction to put a send from a timer into.

Tick deliveries double as the worker's view of the cluster: librdkafka reports
all brokers down as soon as its connection drops, and a tick not delivered
within its timeout says the same; the next delivered tick says it is back.
/readyz reports the outage from this (see ``Ticker.broker_problem``).
"""

from __future__ import annotations

import logging
import time
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
            "error_cb": self._on_error,
        }
        self.sent = 0
        self.unreachable_since: float | None = None  # wall-clock seconds
        self.unreachable_why = ""

    def broker_problem(self) -> str | None:
        """Why the cluster looks unreachable (None when the last tick was delivered)."""
        if self.unreachable_since is None:
            return None
        since = time.strftime("%H:%M:%S", time.gmtime(self.unreachable_since))
        # The client's own text (broker hosts and ports) stays in the worker's log.
        return f"Kafka cluster has not answered since {since} UTC"

    def _down(self, why: str) -> None:
        if self.unreachable_since is None:
            self.unreachable_since = time.time()
            self.unreachable_why = why
            log.warning("Kafka cluster unreachable: %s", why)

    def _on_error(self, error: KafkaError) -> None:
        if error.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            self._down(error.str())

    def _report(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            if self.unreachable_since is not None:
                log.warning(
                    "Kafka cluster answers again after %.0f s",
                    time.time() - self.unreachable_since,
                )
            self.unreachable_since = None
            return
        self._down(f"tick not delivered: {error.str()}")
        log.warning(
            "tick to %s[%s] not delivered: %s (the next tick covers it)",
            message.topic(),
            message.partition(),
            error,
        )

    def send(
        self,
        partitions: Iterable[int],
        now_ms: int,
        topic: str | None = None,
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> None:
        """A tick for each of ``partitions`` of the ticks topic (or of ``topic``, with
        ``headers``: the account-updates topic marks its ticks with a header)."""
        if self._producer is None:
            self._producer = Producer(self._config)
        value = orjson.dumps({"at": now_ms})
        for partition in sorted(partitions):
            self._producer.produce(
                topic or self.topic,
                key=TICK_KEY,
                value=value,
                partition=partition,
                headers=headers,
                on_delivery=self._report,
            )
            self.sent += 1
        self._producer.poll(0)
