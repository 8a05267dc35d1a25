"""Trend ranges: the presets a page offers, the default fitted to the data there is, the bucket width.

A range is [start, end) in UTC microseconds. The bucket width follows the range (about `points` buckets,
rounded up to a width people read easily: 1, 2, 5, 10, 15, 30 s, 1, 2, 5, 10, 15, 30 min, 1, 2, 3, 6, 12 h,
1 d), and buckets sit on whole multiples of their width so they stay put as the page refreshes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

US = 1_000_000
MINUTE = 60 * US
HOUR = 60 * MINUTE
DAY = 24 * HOUR

PRESETS: dict[str, int] = {"15m": 15 * MINUTE, "1h": HOUR, "8h": 8 * HOUR, "24h": DAY, "7d": 7 * DAY}
NICE_WIDTHS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
MAX_SPAN = 31 * DAY


@dataclass(frozen=True)
class TrendRange:
    name: str  # a preset, "shift", "custom" or "hours"
    start: int
    end: int
    bucket_us: int
    fitted: bool = False  # chosen by `fitted_preset` (the page asked for "auto")

    def view(self) -> dict[str, object]:
        return {
            "name": self.name,
            "start": self.start,
            "end": self.end,
            "bucket_us": self.bucket_us,
            "fitted": self.fitted,
        }


def nice_bucket_us(span_us: int, points: int) -> int:
    """The smallest readable width giving at most `points` buckets over the span (>= 1 s)."""
    need_s = span_us / max(1, points) / US
    for w in NICE_WIDTHS_S:
        if w >= need_s:
            return w * US
    return math.ceil(need_s / 86400) * 86400 * US


def fitted_preset(data_start_us: int | None, now_us: int, longest_us: int = PRESETS["7d"]) -> str:
    """The shortest preset that shows all the data, but none longer than `longest_us` (the longest that fits
    when there is more data, or no data at all).

    Two minutes of data in a 24 h chart sit in the last pixels; in a 15 min chart they fill an eighth."""
    allowed = [name for name, span in PRESETS.items() if span <= longest_us] or ["15m"]
    if data_start_us is None:
        return allowed[-1]
    age = now_us - data_start_us
    return next((name for name in allowed if age <= PRESETS[name]), allowed[-1])


def make_range(name: str, start: int, end: int, points: int, fitted: bool = False) -> TrendRange:
    width = nice_bucket_us(end - start, points)
    return TrendRange(name, start - start % width, end, width, fitted)


def preset_range(name: str, now_us: int, points: int, fitted: bool = False) -> TrendRange:
    return make_range(name, now_us - PRESETS[name], now_us, points, fitted)


def parse_custom(start: str, end: str, now_us: int) -> tuple[int, int]:
    """A custom range from two UTC microsecond integers; ValueError with the fix when they make no range."""
    try:
        lo, hi = int(start), int(end)
    except ValueError:
        raise ValueError("start and end are UTC microseconds since the epoch, e.g. start=1764000000000000") from None
    hi = min(hi, now_us)
    if hi <= lo:
        raise ValueError("end must be after start (and start in the past)")
    if hi - lo > MAX_SPAN:
        raise ValueError("a custom range spans at most 31 days")
    return lo, hi
