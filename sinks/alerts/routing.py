"""Pure rules of alert delivery: which channel gets which alert, when to retry, how fast to speak."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from plantstream.core.config import AlertRetrySettings, AlertRoute

SEVERITY_RANK = {"INFO": 0, "WARNING": 1, "CRITICAL": 2}


def routes_to(channel: AlertRoute, alert: Mapping[str, Any]) -> bool:
    """The channel wants this alert: severity at or above its minimum and the asset matches a glob."""
    if SEVERITY_RANK.get(str(alert["severity"]), 0) < SEVERITY_RANK[channel.min_severity]:
        return False
    return any(fnmatchcase(str(alert["asset"]), pattern) for pattern in channel.assets)


def backoff_s(attempts: int, retry: AlertRetrySettings) -> float:
    """Delay before the next try after `attempts` failed ones: initial, 2x, 4x ... capped at max_s."""
    return float(min(retry.max_s, retry.initial_s * 2 ** max(0, attempts - 1)))


@dataclass
class TokenBucket:
    """`rate_per_min` messages a minute with bursts of `burst`; None = unlimited. Time is passed in,
    so the logic is testable without sleeping."""

    rate_per_min: float | None
    burst: int
    tokens: float = field(init=False)
    stamp: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)

    def _refill(self, now: float) -> None:
        if self.rate_per_min is None:
            return
        if self.stamp is not None:
            self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate_per_min / 60.0)
        self.stamp = now

    def available(self, now: float) -> int:
        if self.rate_per_min is None:
            return 1 << 30
        self._refill(now)
        return int(self.tokens)

    def take(self, now: float, n: int = 1) -> None:
        if self.rate_per_min is None:
            return
        self._refill(now)
        self.tokens -= n

    def wait_s(self, now: float) -> float:
        """Seconds until one whole token is available (0 when there is one)."""
        if self.rate_per_min is None:
            return 0.0
        self._refill(now)
        missing = 1.0 - self.tokens
        return 0.0 if missing <= 0 else missing * 60.0 / self.rate_per_min


def plan_batch(n_due: int, tokens: int, can_digest: bool) -> str:
    """How to send `n_due` deliveries with `tokens` messages allowed now: 'each' (one message per alert),
    'digest' (a flood coalesced into one message), or 'wait' (rate limited, nothing may go out yet)."""
    if n_due <= tokens:
        return "each"
    if tokens >= 1:
        return "digest" if can_digest else "each"
    return "wait"
