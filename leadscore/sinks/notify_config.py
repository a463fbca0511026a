"""The notification sink's endpoints file (YAML), validated by pydantic.

URLs and secrets can (and for Slack webhooks and signing secrets should) come
from environment variables named in the file (``url_env``, ``secret_env``);
they are resolved once, at start-up, from the environment given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from leadscore.config import is_loopback
from leadscore.errors import ConfigError
from leadscore.sinks.files import load_model, wants_action


class EndpointSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    kind: Literal["slack", "webhook"]
    url: str | None = None
    url_env: str | None = None
    secret_env: str | None = None
    actions: list[str] = Field(
        default_factory=lambda: ["*"],
        description='"kind:name" patterns, shell-style wildcards: "threshold_crossed:*", "*"',
    )
    max_attempts: int = Field(8, ge=1, le=100)
    backoff_initial_seconds: float = Field(0.5, gt=0, le=60)
    backoff_max_seconds: float = Field(60.0, gt=0, le=3600)
    retry_after_max_seconds: float = Field(300.0, gt=0, le=3600)
    timeout_seconds: float = Field(10.0, gt=0, le=300)
    rate_per_second: float = Field(10.0, gt=0, le=10_000)
    max_concurrency: int = Field(8, ge=1, le=1000)
    breaker_failures: int = Field(5, ge=1, le=1000)
    breaker_cooldown_seconds: float = Field(30.0, gt=0, le=3600)
    max_outage_seconds: float = Field(
        3600.0,
        gt=0,
        le=7 * 86_400,
        description="A delivery not done this long after it began is dead-lettered; "
        "waiting on an open breaker spends no attempts",
    )
    redirects: Literal["refuse", "same_origin"] = Field(
        "refuse",
        description="refuse: a 3xx answer fails the delivery; same_origin: 307 and 308 to the "
        "same scheme, host and port are followed (at most 3)",
    )
    allow_http: bool = Field(
        False, description="Allow an http:// URL to a host other than loopback (unencrypted)"
    )

    @model_validator(mode="after")
    def _one_url(self) -> EndpointSpec:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of url and url_env")
        if self.kind == "webhook" and self.secret_env is None:
            raise ValueError("a webhook needs secret_env: its body is signed")
        return self


class NotifySpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    link_template: str | None = Field(
        None, description="Link to a lead in messages, e.g. https://crm.example/leads/{contact_id}"
    )
    endpoints: list[EndpointSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> NotifySpec:
        names = [e.name for e in self.endpoints]
        if len(names) != len(set(names)):
            raise ValueError("endpoint names must be unique")
        return self


@dataclass(frozen=True)
class Endpoint:
    """An endpoint with its URL and secret resolved."""

    spec: EndpointSpec
    url: str
    secret: bytes | None

    @property
    def name(self) -> str:
        return self.spec.name

    def wants(self, kind: str, name: str) -> bool:
        return wants_action(self.spec.actions, kind, name)


@dataclass(frozen=True)
class NotifyConfig:
    link_template: str | None
    endpoints: tuple[Endpoint, ...]


def redact_url(url: str) -> str:
    """Scheme and host of a URL, for logs, metrics and headers (a Slack webhook's path
    is its secret)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid URL>"
    return f"{parts.scheme or '?'}://{host}{port}"


def check_url(spec: EndpointSpec, url: str) -> None:
    """https, or http to loopback, or http anywhere with allow_http; the message never
    repeats the URL (it may be the secret)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises on a port that is not a number
    except ValueError:
        raise ConfigError(f"endpoint {spec.name}: the URL is not valid") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigError(f"endpoint {spec.name}: the URL must be https://host/...")
    if parts.scheme == "http" and not spec.allow_http and not is_loopback(host):
        raise ConfigError(
            f"endpoint {spec.name}: http:// is only allowed to a loopback host; use https, "
            "or set allow_http: true to send unencrypted"
        )


def _resolve(spec: EndpointSpec, env: Mapping[str, str]) -> Endpoint:
    def need(var: str) -> str:
        value = env.get(var)
        if not value:
            raise ConfigError(f"endpoint {spec.name}: environment variable {var} is not set")
        return value

    url = spec.url if spec.url is not None else need(spec.url_env or "")
    check_url(spec, url)
    secret = need(spec.secret_env).encode() if spec.secret_env else None
    return Endpoint(spec, url, secret)


def load_notify_config(path: Path, env: Mapping[str, str]) -> NotifyConfig:
    spec = load_model(path, NotifySpec)
    return NotifyConfig(spec.link_template, tuple(_resolve(e, env) for e in spec.endpoints))
