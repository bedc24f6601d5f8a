"""How long a client waits after a failed request: backoff with full jitter, and a circuit breaker."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Literal


class RetryPolicy:
    """How long to wait after a failed request: backoff with full jitter, and a circuit breaker.

    The n-th failure in a row waits a random time in [0, min(cap, base * 2**(n-1))]. After
    `failure_threshold` failures in a row the breaker opens: no request for half to all of
    `recovery_timeout` seconds (jittered, so a fleet does not come back at the same instant),
    then one probe (half-open); its failure opens the breaker again, its success closes it.

    The defaults find a restarted server again within 5 s: the first retry comes within half
    a second and no wait is longer than 4 s, while a fleet's requests to a server that stays
    away are spread out and stay few (one per instance every 2 to 4 s).
    """

    def __init__(
        self,
        *,
        base: float = 0.5,
        cap: float = 4.0,
        failure_threshold: int = 5,
        recovery_timeout: float = 4.0,
        random: Callable[[], float] = random.random,
    ) -> None:
        self.base = base
        self.cap = cap
        self.failure_threshold = failure_threshold
        self.recovery_timeout = recovery_timeout
        self._random = random
        self.failures = 0

    @property
    def state(self) -> Literal["closed", "open"]:
        return "open" if self.failures >= self.failure_threshold else "closed"

    def failure(self) -> float:
        """Count a failure; the seconds to wait before the next request."""
        self.failures += 1
        delay = self._random() * min(self.cap, self.base * 2 ** min(self.failures - 1, 32))
        if self.state == "open":
            delay = max(delay, self.recovery_timeout * (0.5 + 0.5 * self._random()))
        return delay

    def success(self) -> None:
        self.failures = 0
