"""Log a condition that repeats (a device that keeps failing, a broker that stays away) without flooding.

`OutageLog.failed(cause)` writes a warning the first time, then at most once per `interval_s` while the
condition lasts, saying how many reports it held back; with `per_cause` a different cause is reported at
once. `recovered()` writes one info line when a reported condition ends. Pure bookkeeping around a
logger, with an injectable clock for tests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

DEFAULT_INTERVAL_S = 30.0


class OutageLog:
    def __init__(
        self,
        log: logging.Logger,
        subject: str,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        per_cause: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`subject` starts every line (e.g. "Modbus device 'press1-plc' (127.0.0.1:502 unit 1)")."""
        self._log = log
        self.subject = subject
        self.interval_s = interval_s
        self._per_cause = per_cause
        self._clock = clock
        self.cause = ""  # the last reported cause; empty while nothing fails
        self._reported_at: float | None = None
        self._held_back = 0

    @property
    def failing(self) -> bool:
        return bool(self.cause)

    def failed(self, cause: str, consequence: str = "") -> bool:
        """Report `cause` (plus `consequence`, e.g. "its tags are BAD until it recovers") unless it was
        reported less than `interval_s` ago; True when a line was written."""
        now = self._clock()
        new_cause = self._per_cause and cause != self.cause
        if self._reported_at is not None and now - self._reported_at < self.interval_s and not new_cause:
            self._held_back += 1
            return False
        more = f" ({self._held_back} more failure(s) since the last report)" if self._held_back else ""
        tail = f"; {consequence}" if consequence else ""
        self._log.warning("%s: %s%s%s (reported at most every %g s)", self.subject, cause, tail, more, self.interval_s)
        self.cause, self._reported_at, self._held_back = cause, now, 0
        return True

    def recovered(self, message: str = "OK again") -> bool:
        """One info line when a reported condition ended; True when one was written."""
        if not self.cause:
            return False
        self._log.info("%s: %s", self.subject, message)
        self.cause, self._reported_at, self._held_back = "", None, 0
        return True
