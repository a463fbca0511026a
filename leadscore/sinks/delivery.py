"""Delivering one action to one HTTP endpoint: rate limit, circuit breaker, retries.

A delivery is retried (exponential backoff with full jitter, never sooner than
a Retry-After the endpoint sent) on connection errors, timeouts, 408, 425, 429
and 5xx. Other answers are final: a 4xx says the request itself is wrong, and
a redirect is not followed unless the endpoint allows same-origin redirects.
After ``max_attempts`` the delivery fails with the last error and the caller
dead-letters the action.

While an endpoint's circuit breaker is open, deliveries wait for it without
spending attempts: an outage costs each action only the attempts that opened
the breaker, and half-open trials are free too. A delivery not done
``max_outage_seconds`` after it began gives up and is dead-lettered.

Error texts never carry the endpoint's URL (a Slack webhook URL is itself the
secret): they name the scheme and host at most.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
from aiolimiter import AsyncLimiter
from yarl import URL

from leadscore.errors import DeliveryError
from leadscore.sinks.breaker import CircuitBreaker
from leadscore.sinks.messages import slack_body, webhook_body
from leadscore.sinks.notify_config import Endpoint, redact_url
from leadscore.sinks.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

log = logging.getLogger("leadscore.sink")

RETRYABLE_STATUS = frozenset({408, 425, 429})
REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
SAME_METHOD_REDIRECTS = frozenset({307, 308})  # the only ones that re-POST the body
MAX_REDIRECTS = 3
MAX_RESPONSE_BYTES = 65_536  # what is read of an answer; the rest is left unread
MAX_RETRY_AFTER_SECONDS = 86_400.0
_SECONDS = re.compile(r"[0-9]{1,10}")  # ASCII digits only: str.isdigit() takes "²"


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    attempts: int
    error: str | None = None


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Retry-After as seconds (a number of seconds or an HTTP date); None if it is neither."""
    if not value:
        return None
    text = value.strip()
    if _SECONDS.fullmatch(text):
        return min(float(text), MAX_RETRY_AFTER_SECONDS)
    try:
        return min(max(0.0, parsedate_to_datetime(text).timestamp() - now), MAX_RETRY_AFTER_SECONDS)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None


def describe_failure(exc: BaseException, timeout: float) -> str:
    """What went wrong in a request, without the URL (aiohttp puts it in many messages)."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port} ({exc.os_error.strerror or 'refused'})"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"{type(exc).__name__} (HTTP {exc.status})"
    return type(exc).__name__


def same_origin(a: URL, b: URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


class EndpointClient:
    """Everything needed to deliver to one endpoint; shared by all its deliveries."""

    def __init__(
        self,
        endpoint: Endpoint,
        session: aiohttp.ClientSession,
        link: str | None,
        clock: Any = time.monotonic,
    ) -> None:
        spec = endpoint.spec
        self.endpoint = endpoint
        self.session = session
        self.link = link
        self.clock = clock
        self.where = redact_url(endpoint.url)
        self.url = URL(endpoint.url)
        self.limiter = AsyncLimiter(spec.rate_per_second, 1.0)
        self.slots = asyncio.Semaphore(spec.max_concurrency)
        self.breaker = CircuitBreaker(spec.breaker_failures, spec.breaker_cooldown_seconds, clock)

    def _pause(self, attempts: int, error: DeliveryError) -> float:
        """Full-jitter exponential backoff, never shorter than the endpoint's Retry-After."""
        spec = self.endpoint.spec
        ceiling = min(spec.backoff_max_seconds, spec.backoff_initial_seconds * 2 ** (attempts - 1))
        pause = random.uniform(0, ceiling)  # noqa: S311 (jitter, not a secret)
        if error.retry_after is not None:
            pause = max(pause, min(error.retry_after, spec.retry_after_max_seconds))
        return pause

    def _request(self, action: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: action["action_id"]}
        if self.endpoint.spec.kind == "slack":
            return slack_body(action, self.link), headers
        body = webhook_body(action)
        timestamp = int(time.time())
        if self.endpoint.secret is None:  # the config refuses a webhook without one
            raise DeliveryError("the webhook has no signing secret", retryable=False)
        headers[TIMESTAMP_HEADER] = str(timestamp)
        headers[SIGNATURE_HEADER] = sign(self.endpoint.secret, timestamp, body)
        return body, headers

    async def _post(self, body: bytes, headers: dict[str, str]) -> None:
        """One attempt; redirects only within the endpoint's origin, and only if allowed."""
        spec = self.endpoint.spec
        timeout = aiohttp.ClientTimeout(total=spec.timeout_seconds)
        url = self.url
        for _ in range(MAX_REDIRECTS + 1):
            try:
                async with (
                    self.slots,
                    self.limiter,
                    self.session.post(
                        url, data=body, headers=headers, timeout=timeout, allow_redirects=False
                    ) as answer,
                ):
                    await answer.content.read(MAX_RESPONSE_BYTES)
                    status = answer.status
                    retry_after = retry_after_seconds(
                        answer.headers.get("Retry-After"), time.time()
                    )
                    location = answer.headers.get("Location")
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                self.breaker.failure()
                raise DeliveryError(describe_failure(exc, spec.timeout_seconds), True) from None
            if 200 <= status < 300:
                self.breaker.success()
                return
            if status in RETRYABLE_STATUS or status >= 500:
                self.breaker.failure()
                raise DeliveryError(f"HTTP {status}", retryable=True, retry_after=retry_after)
            self.breaker.success()  # the endpoint is up; this request is what it refuses
            if status not in REDIRECT_STATUS:
                raise DeliveryError(f"HTTP {status}", retryable=False)
            target = self._redirect_target(status, url, location)
            if target is None:
                raise DeliveryError(
                    f"HTTP {status}: redirect not followed (redirects: {spec.redirects})",
                    retryable=False,
                )
            url = target
        raise DeliveryError(f"more than {MAX_REDIRECTS} redirects", retryable=False)

    def _redirect_target(self, status: int, url: URL, location: str | None) -> URL | None:
        if self.endpoint.spec.redirects != "same_origin" or status not in SAME_METHOD_REDIRECTS:
            return None
        if not location:
            return None
        try:
            target = url.join(URL(location))
        except ValueError:
            return None
        return target if same_origin(target, self.url) else None

    async def _breaker_allows(self, deadline: float) -> bool:
        """Wait, without spending an attempt, until the breaker lets a request through."""
        while not self.breaker.allow():
            now = self.clock()
            if now >= deadline:
                return False
            reopen = self.breaker.opened_at + self.breaker.cooldown
            await asyncio.sleep(min(max(0.05, reopen - now), deadline - now, 1.0))
        return True

    async def deliver(self, action: dict[str, Any]) -> Outcome:
        spec = self.endpoint.spec
        try:
            body, headers = self._request(action)
        except DeliveryError as error:
            return Outcome(False, 0, str(error))
        except (KeyError, TypeError, ValueError) as error:  # an action the schema let through
            return Outcome(False, 0, f"cannot build the request: {type(error).__name__}")
        counted = tries = 0
        deadline = self.clock() + spec.max_outage_seconds
        while True:
            if not await self._breaker_allows(deadline):
                return Outcome(
                    False,
                    tries,
                    f"{self.where} unavailable for {spec.max_outage_seconds:g} s "
                    "(max_outage_seconds)",
                )
            trial = self.breaker.state == "half_open"
            tries += 1
            try:
                await self._post(body, headers)
            except DeliveryError as error:
                if not error.retryable:
                    return Outcome(False, tries, str(error))
                if not trial:
                    counted += 1
                if counted >= spec.max_attempts:
                    return Outcome(False, tries, str(error))
                if self.clock() >= deadline:
                    return Outcome(False, tries, f"{error}; gave up after max_outage_seconds")
                if self.breaker.state == "closed":
                    await asyncio.sleep(self._pause(counted, error))
                continue
            return Outcome(True, tries)
