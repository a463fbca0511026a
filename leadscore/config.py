"""Settings: one frozen object built once at start-up from LEADSCORE_* variables."""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from leadscore.errors import ConfigError

ENV_PREFIX = "LEADSCORE_"
# The largest record the worker's producer sends (Faust's producer_max_request_size);
# input and output limits stay well under it, so no single record can stop the worker.
PRODUCER_MAX_REQUEST_BYTES = 1_000_000
DLQ_HEADROOM_BYTES = 16_384  # a dead-lettered record carries its original bytes plus headers


class Settings(BaseSettings):
    """Every setting of leadscore. Environment variable: LEADSCORE_<NAME IN CAPITALS>."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated"
    )
    app_id: str = Field("leadscore", description="Consumer group id and prefix of internal topics")
    events_topic: str = Field("leadscore.events", description="Input: engagement events")
    actions_topic: str = Field(
        "leadscore.actions", description="Output: threshold and stage actions"
    )
    lead_state_topic: str = Field(
        "leadscore.lead-state", description="Output: latest lead snapshot (compacted)"
    )
    score_changes_topic: str = Field("leadscore.score-changes", description="Output: audit trail")
    dlq_topic: str = Field(
        "leadscore.dlq", description="Output: input records that could not be scored"
    )
    assignments_topic: str = Field(
        "leadscore.assignments", description="Output of the routing sink"
    )
    sink_dlq_topic: str = Field(
        "leadscore.sink-dlq",
        description="Output of the sinks: actions they could not deliver, with the last error",
    )
    ticks_topic: str = Field(
        "leadscore.ticks",
        description="Internal: timer ticks that drive decay re-assessment "
        "(as many partitions as the events topic)",
    )
    handoff_topic: str = Field(
        "leadscore.handoff",
        description="Internal: records a worker hands to the partition of another contact "
        "(merges, events of merged contacts, events off their key's partition; as many "
        "partitions as the events topic)",
    )
    privacy_topic: str = Field(
        "leadscore.privacy",
        description="Input: erase requests, keyed by contact id (compacted; as many partitions "
        "as the events topic; `leadscore erase` writes them)",
    )
    privacy_receipts_topic: str = Field(
        "leadscore.privacy-receipts",
        description="Output: what each erasure cleared, keyed by request id (compacted; the "
        "contact as a keyed hash)",
    )
    account_updates_topic: str = Field(
        "leadscore.account-updates",
        description="Internal: what each contact now brings its account, keyed by account id "
        "(the account agent's input; as many partitions as the events topic)",
    )
    account_state_topic: str = Field(
        "leadscore.account-state",
        description="Output: latest snapshot of each account, keyed by account id (compacted)",
    )
    account_actions_topic: str = Field(
        "leadscore.account-actions",
        description="Output: account threshold crossings and stage changes, keyed by account id",
    )
    privacy_key: SecretStr | None = Field(
        None,
        description="Secret key of the keyed hash (HMAC-SHA256) that names an erased contact "
        "in receipts and the suppression list, at least 16 characters. Unset or empty: a "
        "worker stops at the first erase request, which stays unprocessed until a worker "
        "with the key takes it",
    )
    timer_interval_seconds: float = Field(
        10.0,
        ge=0.2,
        le=60,
        description="How often the timer visits due leads; a decay-driven stage change "
        "lands at most about twice this after its computed time",
    )
    partitions: int = Field(
        6, ge=1, le=10_000, description="Partitions of the topics `topics create` makes"
    )
    replication_factor: int = Field(
        1, ge=1, le=16, description="Replication of the topics it makes"
    )
    rules_file: Path | None = Field(
        None, description="Rules YAML (default: the packaged default rules)"
    )
    data_dir: Path = Field(Path("data"), description="Where RocksDB tables live")
    processing_guarantee: Literal["at_least_once", "exactly_once"] = Field(
        "at_least_once", description="Faust processing guarantee"
    )
    output_format: Literal["json", "avro", "json_schema"] = Field(
        "json",
        description="Encoding of output records (avro: single-object encoding; json_schema: "
        "JSON in Kafka Connect's schema envelope, for JsonConverter with schemas.enable)",
    )
    max_event_bytes: int = Field(
        262_144,
        ge=1_000,
        le=PRODUCER_MAX_REQUEST_BYTES - DLQ_HEADROOM_BYTES,
        description="Larger input records are dead-lettered (too_large)",
    )
    max_output_bytes: int = Field(
        524_288,
        ge=10_000,
        le=PRODUCER_MAX_REQUEST_BYTES - DLQ_HEADROOM_BYTES,
        description="An event whose outputs or lead record would encode larger is not scored "
        "and is dead-lettered (output_too_large); below the producer's limit of "
        f"{PRODUCER_MAX_REQUEST_BYTES} bytes",
    )
    max_clock_skew_seconds: float = Field(
        300.0,
        ge=0,
        le=7 * 86_400,
        description="Events dated further ahead of the worker's clock are dead-lettered "
        "(from_future); a lead an earlier future-dated event moved ahead is set back at "
        "its next event",
    )
    max_properties_bytes: int = Field(
        65_536,
        ge=100,
        description="Events whose properties (keys and values, UTF-8) are larger are dead-lettered",
    )
    session_timeout_seconds: float = Field(
        30.0,
        ge=6,
        le=300,
        description="A worker that stops answering (killed, hung) loses its partitions to "
        "the others after this; a restarted one waits out its old session",
    )
    stop_timeout_seconds: float = Field(
        60.0,
        ge=1,
        le=3600,
        description="A worker told to stop (SIGTERM, Ctrl-C) that has not stopped cleanly "
        "after this exits with code 75 (while the Kafka cluster is unreachable a clean stop "
        "never ends); its next start rebuilds local state from the changelog",
    )
    web_enabled: bool = Field(True, description="Serve the worker's HTTP endpoints")
    web_host: str = Field("127.0.0.1", description="Address the HTTP endpoints bind to")
    web_port: int = Field(6066, ge=1, le=65535, description="Port of the HTTP endpoints")
    web_url: str | None = Field(
        None,
        description="URL other workers use to reach this one's HTTP endpoints (forwarding); "
        "unset: http://<web host>:<web port>, with this machine's host name when the "
        "web host is 0.0.0.0 or ::",
    )
    metrics_enabled: bool = Field(
        True,
        description="Per-event metrics: counters and latency histograms (false only to "
        "measure their cost; the leads-by-stage census is kept either way)",
    )
    rocksdb_write_buffer_bytes: int = Field(
        4 * 1024 * 1024,
        ge=64 * 1024,
        description="RocksDB memtable size of each table partition's store (two per store; "
        "Faust's default is 64 MiB, three per store)",
    )
    rocksdb_block_cache_bytes: int = Field(
        8 * 1024 * 1024,
        ge=0,
        description="RocksDB block cache of each table partition's store (Faust's default "
        "is 2 GiB each)",
    )
    batch_max_events: int = Field(
        500,
        ge=1,
        le=100_000,
        description="Most input records the worker processes as one step: it takes what "
        "has arrived, up to this many, and never waits for more while it holds any",
    )
    history_size: int = Field(
        20,
        ge=0,
        le=1000,
        description="Score changes per lead whose place on the score-changes topic the lead "
        "record keeps, for /leads/{id}/history (0: none)",
    )
    api_expose_pii: bool = Field(
        False,
        description="Let /leads/{id}/intelligence return the lead's identify traits "
        "(may hold names, emails); off: no API answer carries trait values (actions on the "
        "actions topic still carry the traits the fit rules read)",
    )
    api_token: SecretStr | None = Field(
        None,
        description="Bearer token the lead query API requires (all but /healthz, /readyz); "
        "printable ASCII, no spaces. Unset: a worker on a loopback address serves the API "
        "open (with a warning); one on any other address refuses to start",
    )
    api_auth: Literal["token", "none"] = Field(
        "token",
        description="token: the API requires LEADSCORE_API_TOKEN (see there); none: the API "
        "is open to whoever reaches it, on purpose (logged as a warning at start-up)",
    )
    notify_config: Path | None = Field(
        None, description="Endpoints file of `leadscore sink notify` (YAML)"
    )
    routing_config: Path | None = Field(
        None, description="Teams and rules file of `leadscore sink routing` (YAML)"
    )
    sink_data_dir: Path = Field(
        Path("sink-data"), description="Where a sink keeps its delivery ledger (RocksDB)"
    )
    sink_metrics_port: int = Field(
        9109, ge=0, le=65535, description="Port of a sink's /metrics (0: none)"
    )
    sink_max_in_flight: int = Field(
        500, ge=1, le=100_000, description="Actions a sink works on at once; it pauses beyond"
    )
    sink_shutdown_grace_seconds: float = Field(
        20.0, ge=0, le=600, description="On SIGTERM, how long a sink lets deliveries finish"
    )
    sink_session_timeout_seconds: float = Field(
        10.0,
        ge=6,
        le=300,
        description="A sink that stops answering loses its partitions to the others after this",
    )
    sink_dedupe_days: float = Field(
        7.0, gt=0, le=365, description="How long a sink remembers a delivery to suppress repeats"
    )
    sink_dedupe_max_entries: int = Field(
        1_000_000, ge=1000, description="At most this many deliveries remembered (oldest go)"
    )
    log_level: Literal["debug", "info", "warn", "error"] = Field("info", description="Log level")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="SASL mechanism (with SASL_* protocols)"
    )
    sasl_username: str | None = Field(None, description="SASL user name")
    sasl_password: SecretStr | None = Field(None, description="SASL password")
    ssl_cafile: Path | None = Field(None, description="CA bundle for SSL/SASL_SSL")

    @classmethod
    def from_variables(cls, variables: Mapping[str, str]) -> Settings:
        """Settings from ``LEADSCORE_*`` variables given as a mapping (a child's environment)."""
        values: dict[str, Any] = {
            k.removeprefix(ENV_PREFIX).lower(): v for k, v in variables.items()
        }
        return cls(**values)

    def privacy_hash_key(self) -> bytes | None:
        """The erasure hash key, or None when unset; ConfigError when too short."""
        key = b"" if self.privacy_key is None else self.privacy_key.get_secret_value().encode()
        if not key:  # unset, or empty as an unset ${VAR:-} gives: erasure waits for a key
            return None
        if len(key) < 16:
            raise ConfigError("LEADSCORE_PRIVACY_KEY must be at least 16 characters")
        return key

    def api_access(self) -> tuple[str | None, str | None]:
        """(the token the API requires or None for open, a warning to log or None).

        Fails closed: raises ConfigError, naming the setting, for an empty or malformed
        token and for a worker that would serve the API open on a non-loopback address.
        """
        where = f"{self.web_host}:{self.web_port}"
        if self.api_auth == "none":
            return None, (
                f"the lead query API on {where} is open (LEADSCORE_API_AUTH=none): anyone "
                "who reaches it can read leads and metrics"
            )
        if self.api_token is not None:
            token = self.api_token.get_secret_value()
            if not token.strip():
                raise ConfigError(
                    "LEADSCORE_API_TOKEN is empty (an unset ${VAR:-} gives exactly this); "
                    "set a token, or LEADSCORE_API_AUTH=none to serve the API open on purpose"
                )
            if not all("!" <= ch <= "~" for ch in token):
                raise ConfigError(
                    "LEADSCORE_API_TOKEN must be printable ASCII without spaces (it travels "
                    "in an HTTP header)"
                )
            return token, None
        if self.web_enabled and not is_loopback(self.web_host):
            raise ConfigError(
                f"LEADSCORE_WEB_HOST={self.web_host} is not a loopback address and "
                "LEADSCORE_API_TOKEN is not set: the lead query API would be open to the "
                "network. Set LEADSCORE_API_TOKEN, or LEADSCORE_API_AUTH=none to serve it "
                "open on purpose"
            )
        return None, (
            f"LEADSCORE_API_TOKEN is not set: the lead query API on {where} is open to this machine"
        )

    def canonical_web_url(self) -> str:
        """How other workers reach this worker's HTTP endpoints."""
        if self.web_url:
            return self.web_url.rstrip("/")
        wildcard = self.web_host in ("0.0.0.0", "::", "")  # noqa: S104 (a comparison, no bind)
        host = socket.gethostname() if wildcard else self.web_host
        return f"http://{host}:{self.web_port}"

    def confluent_config(self) -> dict[str, Any]:
        """Client settings for confluent-kafka producers, consumers and admin clients."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
            # librdkafka's own lines go through Python logging (format, level, capture).
            "logger": logging.getLogger("leadscore.kafka"),
        }
        if self.security_protocol.startswith("SASL"):
            conf["sasl.mechanism"] = self.sasl_mechanism
            conf["sasl.username"] = self.sasl_username or ""
            conf["sasl.password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else ""
            )
        if self.ssl_cafile is not None:
            conf["ssl.ca.location"] = str(self.ssl_cafile)
        return conf


def is_loopback(host: str) -> bool:
    """Is ``host`` (a name or an address) this machine's loopback?"""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment (and explicit overrides), or say what is wrong."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{ENV_PREFIX}{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from exc


def describe_settings() -> list[tuple[str, str, str]]:
    """(environment variable, default, description) of every setting, for --help and docs."""
    rows = []
    for name, info in Settings.model_fields.items():
        default = "" if info.default is None else str(info.default)
        rows.append((f"{ENV_PREFIX}{name.upper()}", default, info.description or ""))
    return rows


def settings_reference() -> str:
    """docs/configuration.md: every setting with its default and meaning (``make docs``)."""
    lines = [
        "# Configuration",
        "",
        "One frozen settings object (`leadscore.config.Settings`), built once at start-up",
        "from `LEADSCORE_*` environment variables; `leadscore --help` lists them too and",
        "`leadscore settings` prints the values in effect (passwords masked). An invalid",
        "value stops the start with the variable's name and the problem.",
        "",
        "This page is generated from the settings object (`make docs`, which runs",
        "`leadscore settings --markdown`); a unit test fails when it is stale.",
        "",
        "| variable | default | meaning |",
        "|---|---|---|",
    ]
    for env, default, description in describe_settings():
        lines.append(f"| `{env}` | `{default}` | {description} |")
    return "\n".join(lines) + "\n"
