"""The Faust app and transport the worker runs on, made only of subclasses.

Faust is customised through its own extension points and nothing else:

- the transport is registered under the URL scheme ``leadscore://`` through
  the ``faust.transports`` entry point (pyproject.toml), with the consumer,
  client thread, producer and transaction manager of ``consumer`` and
  ``producer``;
- ``App`` passes ``Stream``, ``Topic``, ``Table`` and ``TableManager`` through Faust's
  class settings and
  overrides ``flow_control``;
- no faust, mode or aiokafka class or module is assigned to at run time
  (tests/unit/test_faust_ext.py snapshots them around building and starting an
  app), and ``versions.check_versions`` refuses versions these subclasses were
  not tested with.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers.aiokafka import Transport as FaustTransport
from mode.utils.objects import cached_property

from leadscore.errors import ConfigError
from leadscore.stream.faust_ext.consumer import Consumer, HandoffsFirst
from leadscore.stream.faust_ext.ordering import EventGate, OutputFence
from leadscore.stream.faust_ext.producer import Producer, TransactionManager
from leadscore.stream.faust_ext.recovery import ChangelogLoader, TableManager
from leadscore.stream.faust_ext.streams import FlowControl, Stream, Topic
from leadscore.stream.faust_ext.tables import Table
from leadscore.stream.faust_ext.versions import check_versions

#: The broker URL scheme of ``Transport`` (the ``faust.transports`` entry point's name).
SCHEME = "leadscore"


class Transport(FaustTransport):
    """The aiokafka transport with the worker's consumer, producer and transactions."""

    Consumer = Consumer
    Producer = Producer
    TransactionManager = TransactionManager


def broker_urls(bootstrap_servers: str) -> list[str]:
    """``host:port,host:port`` as broker URLs of this transport."""
    return [f"{SCHEME}://{host.strip()}" for host in bootstrap_servers.split(",")]


class App(faust.App):
    """Faust's app on the leadscore transport, stream and topic classes.

    ``outputs`` and ``between_events`` are this app's ordering (see ``ordering``).
    """

    def __init__(self, id: str, **options: Any) -> None:
        check_versions()
        self.outputs = OutputFence()
        self.between_events = EventGate()
        #: Set by the worker: loads assigned changelog partitions in bulk (``recovery``).
        self.changelog_loader: ChangelogLoader | None = None
        #: Set by the worker under at_least_once: after an assignment, the hand-off
        #: records that wait are read before the partition's other inputs (``consumer``, 10).
        self.handoffs_first: HandoffsFirst | None = None
        super().__init__(
            id, Stream=Stream, Topic=Topic, Table=Table, TableManager=TableManager, **options
        )
        schemes = {url.scheme for url in (*self.conf.broker_consumer, *self.conf.broker_producer)}
        if schemes != {SCHEME}:
            raise ConfigError(
                f"the worker's app needs its own transport ({SCHEME}://host:port brokers), "
                f"not {sorted(schemes)}: its guarantees live in that transport's classes"
            )

    @cached_property
    def flow_control(self) -> FlowControl:
        return FlowControl(loop=self.loop)
