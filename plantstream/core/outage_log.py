"""Rate-limited logging of repeated conditions: one line per condition per interval, with a count.

A broker outage makes every client retry several times a second; logging each retry wrote tens of
megabytes a minute onto the disk the store-and-forward buffer needs. Contract:
- `OutageLog.report(condition, message, *args)` logs the first occurrence of a condition at once and
  then at most one line per `interval_s`, saying how many times it happened since the last line;
  `OutageLog.resolved(condition, ...)` logs one line when the condition is over (if it was reported);
  `forget(condition)` drops one silently (a device reader whose failure changed its cause).
- `RateLimitFilter` does the same for log records of other libraries (aiokafka's connection errors):
  records of one logger with one message template pass once per interval, the passing one carrying
  the count of those held back. `limit_loggers(prefixes)` puts it on every logger under the prefixes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

DEFAULT_INTERVAL_S = 60.0


@dataclass(slots=True)
class _Seen:
    last_logged: float
    held: int = 0  # occurrences since the last line
    total: int = 1


class OutageLog:
    """Logs each condition once per interval with a count (see the module doc)."""

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._clock = clock
        self._seen: dict[str, _Seen] = {}

    def report(self, condition: str, message: str, *args: object, level: int = logging.WARNING) -> bool:
        """Note one occurrence; returns True when a line was logged."""
        now = self._clock()
        seen = self._seen.get(condition)
        if seen is None:
            self._seen[condition] = _Seen(now)
            self.logger.log(level, message, *args)
            return True
        seen.total += 1
        seen.held += 1
        if now - seen.last_logged < self.interval_s:
            return False
        self.logger.log(level, message + " (%d times in the last %.0f s)", *args, seen.held, now - seen.last_logged)
        seen.last_logged, seen.held = now, 0
        return True

    def resolved(self, condition: str, message: str, *args: object, level: int = logging.INFO) -> bool:
        """The condition is over: one line (with how often it happened) if it had been reported."""
        seen = self._seen.pop(condition, None)
        if seen is None:
            return False
        self.logger.log(level, message + " (after %d occurrences)", *args, seen.total)
        return True

    def active(self, condition: str) -> bool:
        return condition in self._seen

    def forget(self, condition: str) -> None:
        """Drop a condition without a line (another one took its place)."""
        self._seen.pop(condition, None)


class RateLimitFilter(logging.Filter):
    """Lets one record per (logger, level, message template) through per interval, with a count."""

    def __init__(self, interval_s: float = DEFAULT_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._clock = clock
        self._seen: dict[tuple[str, int, str], _Seen] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:  # only the noise of failures is limited
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        seen = self._seen.get(key)
        if seen is None:
            if len(self._seen) > 1000:  # templates are few; bound the memory anyway
                self._seen.clear()
            self._seen[key] = _Seen(now)
            return True
        seen.held += 1
        if now - seen.last_logged < self.interval_s:
            return False
        record.msg = f"{record.msg} [{seen.held} like this in the last {now - seen.last_logged:.0f} s]"
        seen.last_logged, seen.held = now, 0
        return True


def limit_loggers(prefixes: Iterable[str], interval_s: float = DEFAULT_INTERVAL_S) -> RateLimitFilter:
    """Put one shared `RateLimitFilter` on every existing logger named by or under the prefixes.

    Logger filters apply only to records logged on that very logger (not to those propagated from its
    children), hence every logger; call it after the library's modules are imported."""
    limiter = RateLimitFilter(interval_s)
    prefixes = tuple(prefixes)
    names = [
        n for n in logging.Logger.manager.loggerDict if n in prefixes or n.startswith(tuple(p + "." for p in prefixes))
    ]
    for name in {*prefixes, *names}:
        logger = logging.getLogger(name)
        if limiter not in logger.filters:
            logger.addFilter(limiter)
    return limiter
