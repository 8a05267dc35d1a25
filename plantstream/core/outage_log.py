"""Rate-limited logging of repeated conditions: one line per condition per interval, with a count.

A broker outage makes every client retry several times a second; logging each retry wrote tens of
megabytes a minute onto the disk the store-and-forward buffer needs. Contract:
- `OutageLog.report(condition, message, *args)` logs the first occurrence of a condition at once and
  then at most one line per `interval_s`, saying how many times it happened since the last line;
  `OutageLog.resolved(condition, ...)` logs one line when the condition is over (if it was reported);
  `forget(condition)` drops one silently (a device reader whose failure changed its cause).
- `RateLimitFilter` does the same for log records of other libraries (aiokafka's and librdkafka's
  connection errors): records of one logger whose messages differ only in numbers pass once per
  interval, the passing one carrying the count of those held back. `limit_logging(prefixes)` applies
  it to every record of the loggers under the prefixes, wherever they are handled.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

DEFAULT_INTERVAL_S = 60.0
# the client libraries that log every retry during a broker outage
NOISY_LOGGERS = ("librdkafka", "aiokafka", "faust", "mode")


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


def shape(message: str) -> str:
    """A message with its numbers blanked: the retries of one condition (ports, node ids, "after 0ms")
    look alike. Libraries that log preformatted text (librdkafka: "%s [%s] %s") are told apart this way."""
    return _DIGITS.sub("#", message)[:300]


_DIGITS = re.compile(r"\d+")


class RateLimitFilter(logging.Filter):
    """Lets one record per (logger, level, message shape) through per interval, with a count.

    Only records of loggers under `prefixes` are limited (all when empty), and only WARNING and up."""

    def __init__(
        self,
        interval_s: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        prefixes: Iterable[str] = (),
    ) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._clock = clock
        self.prefixes = tuple(prefixes)
        self._dotted = tuple(p + "." for p in self.prefixes)
        self._seen: dict[tuple[str, int, str], _Seen] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:  # only the noise of failures is limited
            return True
        name = record.name
        if self.prefixes and name not in self.prefixes and not name.startswith(self._dotted):
            return True
        # one verdict per record: the filter may sit on its logger and on a handler both
        verdict: bool | None = getattr(record, "_ps_rate_verdict", None)
        if verdict is None:
            verdict = self._judge(record)
            record._ps_rate_verdict = verdict
        return verdict

    def _judge(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, shape(record.getMessage()))
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


def limit_logging(prefixes: Iterable[str], interval_s: float = DEFAULT_INTERVAL_S) -> RateLimitFilter:
    """Limit the records of the loggers under `prefixes` (see `RateLimitFilter`) wherever they are handled.

    One shared filter goes on every handler of the root logger (which every logger propagates to,
    created now or later) and on every existing logger under the prefixes (whose records a handler
    of its own would otherwise see first). Idempotent: call it again after logging is set up anew."""
    global _limiter
    prefixes = tuple(prefixes)
    if _limiter is None or _limiter.prefixes != prefixes:
        _limiter = RateLimitFilter(interval_s, prefixes=prefixes)
    limiter = _limiter
    for handler in logging.getLogger().handlers:
        if limiter not in handler.filters:
            handler.addFilter(limiter)
    dotted = tuple(p + "." for p in prefixes)
    for name in [n for n in logging.Logger.manager.loggerDict if n in prefixes or n.startswith(dotted)]:
        logger = logging.getLogger(name)
        if limiter not in logger.filters:
            logger.addFilter(limiter)
    return limiter


_limiter: RateLimitFilter | None = None
