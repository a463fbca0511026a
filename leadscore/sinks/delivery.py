"""Delivering one action to one HTTP endpoint: rate limit, circuit breaker, retries.

A delivery is retried (exponential backoff with full jitter, never sooner than
a Retry-After the endpoint sent) on connection errors, timeouts, 408, 429 and
5xx. Other 4xx answers are final: the request itself is wrong, repeating it
cannot help. After ``max_attempts`` the delivery fails with the last error and
the caller dead-letters the action.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
from aiolimiter import AsyncLimiter
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from leadscore.sinks.breaker import CircuitBreaker
from leadscore.sinks.config import Endpoint
from leadscore.sinks.messages import slack_body, webhook_body
from leadscore.sinks.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

log = logging.getLogger("leadscore.sink")

RETRYABLE_STATUS = frozenset({408, 425, 429})


class DeliveryError(Exception):
    def __init__(self, message: str, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    attempts: int
    error: str | None = None


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP date."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


class EndpointClient:
    """Everything needed to deliver to one endpoint; shared by all its deliveries."""

    def __init__(
        self, endpoint: Endpoint, session: aiohttp.ClientSession, link: str | None
    ) -> None:
        spec = endpoint.spec
        self.endpoint = endpoint
        self.session = session
        self.link = link
        self.limiter = AsyncLimiter(spec.rate_per_second, 1.0)
        self.slots = asyncio.Semaphore(spec.max_concurrency)
        self.breaker = CircuitBreaker(spec.breaker_failures, spec.breaker_cooldown_seconds)
        self.backoff = wait_random_exponential(
            multiplier=spec.backoff_initial_seconds, max=spec.backoff_max_seconds
        )

    def _wait(self, state: RetryCallState) -> float:
        pause = float(self.backoff(state))
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, DeliveryError) and error.retry_after is not None:
            pause = max(pause, min(error.retry_after, self.endpoint.spec.retry_after_max_seconds))
        return pause

    def _request(self, action: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: action["action_id"]}
        if self.endpoint.spec.kind == "slack":
            return slack_body(action, self.link), headers
        body = webhook_body(action)
        timestamp = int(time.time())
        assert self.endpoint.secret is not None
        headers[TIMESTAMP_HEADER] = str(timestamp)
        headers[SIGNATURE_HEADER] = sign(self.endpoint.secret, timestamp, body)
        return body, headers

    async def _attempt(self, action: dict[str, Any]) -> None:
        if not self.breaker.allow():
            raise DeliveryError("circuit open: the endpoint failed repeatedly", retryable=True)
        body, headers = self._request(action)
        timeout = aiohttp.ClientTimeout(total=self.endpoint.spec.timeout_seconds)
        try:
            async with (
                self.slots,
                self.limiter,
                self.session.post(
                    self.endpoint.url, data=body, headers=headers, timeout=timeout
                ) as answer,
            ):
                await answer.read()
                status = answer.status
                retry_after = retry_after_seconds(answer.headers.get("Retry-After"), time.time())
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.breaker.failure()
            raise DeliveryError(f"{type(exc).__name__}: {exc}"[:300], retryable=True) from None
        if 200 <= status < 300:
            self.breaker.success()
            return
        if status in RETRYABLE_STATUS or status >= 500:
            self.breaker.failure()
            raise DeliveryError(f"HTTP {status}", retryable=True, retry_after=retry_after)
        self.breaker.success()  # the endpoint is up; this request is what it refuses
        raise DeliveryError(f"HTTP {status}", retryable=False)

    async def deliver(self, action: dict[str, Any]) -> Outcome:
        attempts = 0
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.endpoint.spec.max_attempts),
            wait=self._wait,
            retry=retry_if_exception(lambda e: isinstance(e, DeliveryError) and e.retryable),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    await self._attempt(action)
        except DeliveryError as error:
            return Outcome(False, attempts, str(error))
        return Outcome(True, attempts)
