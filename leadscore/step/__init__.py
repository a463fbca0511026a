"""The per-batch step, a function: (batch, lead store, rules, now) -> effects.

``batch.process`` decodes (or dead-letters), scores and says what to send and
write; ``wheel`` is the in-memory timer wheel it keeps due leads in. Nothing
here knows Faust or a Kafka client: the Faust edge (``leadscore.stream``) moves
the bytes and applies the effects.
"""
