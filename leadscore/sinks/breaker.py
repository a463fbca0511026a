"""A per-endpoint circuit breaker: stop calling an endpoint that keeps failing.

closed: requests go through; ``failures`` consecutive failures open it.
open: requests fail fast, without a call, for ``cooldown`` seconds.
half-open: one trial request goes through; success closes, failure re-opens.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half_open"]
STATE_VALUES: dict[State, int] = {"closed": 0, "half_open": 1, "open": 2}


class CircuitBreaker:
    def __init__(
        self, failures: int, cooldown: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = failures
        self.cooldown = cooldown
        self.clock = clock
        self.state: State = "closed"
        self.failures = 0
        self.opened_at = 0.0
        self.trial_in_flight = False

    def allow(self) -> bool:
        """May a request be made now? (In half-open state, only one at a time.)"""
        if self.state == "open" and self.clock() - self.opened_at >= self.cooldown:
            self.state = "half_open"
        if self.state == "closed":
            return True
        if self.state == "half_open" and not self.trial_in_flight:
            self.trial_in_flight = True
            return True
        return False

    def success(self) -> None:
        self.state = "closed"
        self.failures = 0
        self.trial_in_flight = False

    def failure(self) -> None:
        self.failures += 1
        self.trial_in_flight = False
        if self.state == "half_open" or self.failures >= self.threshold:
            self.state = "open"
            self.opened_at = self.clock()
