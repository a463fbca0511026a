"""The OpenAPI document as the contract tests check answers against."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

DOCUMENT: dict[str, Any] = json.loads(
    resources.files("leadscore").joinpath("openapi.json").read_text()
)
_URI = "urn:leadscore:openapi"
# OpenAPI 3.1 schemas are JSON Schema 2020-12.
_REGISTRY = Registry().with_resource(_URI, Resource(DOCUMENT, DRAFT202012))


def check(body: Any, schema: str) -> None:
    """Raise jsonschema.ValidationError unless ``body`` is a valid ``schema`` component."""
    ref = {"$ref": f"{_URI}#/components/schemas/{schema}"}
    Draft202012Validator(ref, registry=_REGISTRY).validate(body)


def documented_paths() -> set[str]:
    return set(DOCUMENT["paths"])
