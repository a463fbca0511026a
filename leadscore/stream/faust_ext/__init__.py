"""Faust as the worker uses it: subclasses registered through Faust's extension points.

- ``ordering``: the order records reach Kafka in (outputs, changelog, commit).
- ``producer``: the producer buffer and transaction manager that keep it.
- ``consumer``: the consumer that commits only processed offsets.
- ``streams``: the stream, topic and flow control classes.
- ``tables``: the table class, which applies changelog records delivered by the worker.
- ``recovery``: changelog partitions loaded in bulk before Faust's recovery reads them.
- ``app``: the app and the transport (``leadscore://``) that tie them together.
- ``versions``: the exact library versions they were tested with.
"""

from leadscore.stream.faust_ext.app import SCHEME, App, Transport, broker_urls

__all__ = ["SCHEME", "App", "Transport", "broker_urls"]
