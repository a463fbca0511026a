"""Wire formats: decoding input events, encoding outputs, dead-letter envelopes."""
