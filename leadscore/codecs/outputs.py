"""Encoding output records as JSON or Avro single-object encoding."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import orjson

from leadscore.codecs.avro import schema

Encoder = Callable[[dict[str, Any]], bytes]


def encoder(record_name: str, output_format: Literal["json", "avro"]) -> Encoder:
    """The encoder of one output record type (LeadAction, LeadState, ScoreChange)."""
    if output_format == "avro":
        return schema(record_name).encode
    return orjson.dumps
