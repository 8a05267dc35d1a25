"""A bounded stop: after SIGTERM/SIGINT a component stops in order, but within a deadline whatever Kafka does.

Contract: `Deadline(component, timeout_s)` is armed by the signal handler (`arm()`; idempotent). If the
process is still running `timeout_s` later - a client closing or committing against a broker that is
gone can wait for good - it logs one line naming the component and exits with `EXIT_FORCED_STOP`,
after `on_timeout` (flush counters, say). Nothing acknowledged is lost by that: consumers resume from
their last commit, producers keep unacknowledged frames in their store-and-forward buffer.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

log = logging.getLogger("plantstream.shutdown")

EXIT_FORCED_STOP = 4


class Deadline:
    def __init__(self, component: str, timeout_s: float, on_timeout: Callable[[], None] | None = None) -> None:
        self.component = component
        self.timeout_s = timeout_s
        self.on_timeout = on_timeout
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def arm(self) -> None:
        """Start the clock (from a signal handler; later calls do nothing)."""
        with self._lock:
            if self._timer is None:
                self._timer = threading.Timer(self.timeout_s, self._expire)
                self._timer.daemon = True
                self._timer.start()

    @property
    def armed(self) -> bool:
        return self._timer is not None

    def _expire(self) -> None:
        log.error(
            "%s did not stop within %.0f s of the signal (is Kafka unreachable?); exiting now. What it had not "
            "committed is read again on the next start",
            self.component,
            self.timeout_s,
        )
        try:
            if self.on_timeout is not None:
                self.on_timeout()
        finally:
            logging.shutdown()
            os._exit(EXIT_FORCED_STOP)
