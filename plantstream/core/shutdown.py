"""A bounded stop: SIGTERM/SIGINT stops a component in order, but within a deadline whatever Kafka does.

Contract: `StopOnSignal(component, timeout_s).install()` (first thing in the main thread, before any
other thread starts: the threads started later, librdkafka's included, inherit the blocked signals)
takes SIGTERM and SIGINT away from every thread and waits for them in a thread of its own. The first
signal calls the component's stop action (`on_stop(action)`, a thread-safe callable: set an event,
or `loop.call_soon_threadsafe(...)`) and arms the deadline; a second signal ends the process at once.
It does not rely on the main thread: a main thread blocked in a client call (closing a consumer
against a broker that is gone) would never run a Python signal handler.

When the deadline passes, the process writes one line naming the component and exits with
`EXIT_FORCED_STOP` (after `on_timeout`, given a second); should even that be kept from running, a
SIGALRM two seconds later ends it. Nothing acknowledged is lost: consumers resume from their last
commit, producers keep what Kafka did not acknowledge in their store-and-forward buffer.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

EXIT_FORCED_STOP = 4
SIGNALS = {signal.SIGTERM, signal.SIGINT}


class Deadline:
    """Ends the process `timeout_s` after `arm()` (see the module doc); `arm()` is idempotent."""

    def __init__(
        self,
        component: str,
        timeout_s: float,
        on_timeout: Callable[[], None] | None = None,
        *,
        backstop: bool = True,
        exit: Callable[[int], None] = os._exit,
    ) -> None:
        self.component = component
        self.timeout_s = timeout_s
        self.on_timeout = on_timeout
        self.backstop = backstop  # SIGALRM as the last resort (never inside a test process)
        self._exit = exit
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def arm(self) -> None:
        with self._lock:
            if self._timer is not None:
                return
            self._timer = threading.Timer(self.timeout_s, self.expire)
            self._timer.daemon = True
            self._timer.start()
            if self.backstop:
                signal.alarm(math.ceil(self.timeout_s) + 2)  # default action of SIGALRM: the process ends

    @property
    def armed(self) -> bool:
        return self._timer is not None

    def expire(self) -> None:
        # straight to the file descriptor: a logging handler's lock may be held by a thread that is stuck
        line = (
            f"{self.component} did not stop within {self.timeout_s:.0f} s of the signal (is Kafka unreachable?); "
            "exiting now. What it had not committed is read again on the next start\n"
        )
        with contextlib.suppress(OSError):
            os.write(2, line.encode())
        if self.on_timeout is not None:
            last = threading.Thread(target=self.on_timeout, daemon=True)
            last.start()
            last.join(1.0)
        self._exit(EXIT_FORCED_STOP)


class StopOnSignal:
    """SIGTERM/SIGINT -> the component's stop action and a deadline (see the module doc)."""

    def __init__(self, component: str, timeout_s: float, on_timeout: Callable[[], None] | None = None) -> None:
        self.deadline = Deadline(component, timeout_s, on_timeout)
        self._action: Callable[[], Any] | None = None
        self._signalled = False
        self._lock = threading.Lock()

    def install(self) -> StopOnSignal:
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        threading.Thread(target=self._wait, name="stop-on-signal", daemon=True).start()
        return self

    def on_stop(self, action: Callable[[], Any]) -> None:
        """What a signal does (thread-safe); a signal that came before runs it now."""
        with self._lock:
            self._action = action
            signalled = self._signalled
        if signalled:
            action()

    def _wait(self) -> None:
        signal.sigwait(SIGNALS)
        self.deadline.arm()
        with self._lock:
            self._signalled = True
            action = self._action
        if action is not None:
            action()
        signal.sigwait(SIGNALS)  # asked twice: no more waiting
        os._exit(EXIT_FORCED_STOP)
