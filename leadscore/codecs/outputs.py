"""Encoding output records: JSON, Avro single-object encoding, or JSON in Connect's envelope."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import orjson

from leadscore.codecs.avro import schema
from leadscore.codecs.connect import connect_schema

Encoder = Callable[[dict[str, Any]], bytes]


OutputFormat = Literal["json", "avro", "json_schema"]


def encoder(record_name: str, output_format: OutputFormat) -> Encoder:
    """The encoder of one output record type (LeadAction, LeadState, ScoreChange, Assignment)."""
    if output_format == "avro":
        return schema(record_name).encode
    if output_format == "json_schema":
        envelope = connect_schema(record_name)
        return lambda record: orjson.dumps({"schema": envelope, "payload": record})
    return orjson.dumps
