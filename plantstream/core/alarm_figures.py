"""The alarm-management figures of ISA-18.2 (section 16, monitoring and assessment), from alarm states.

Computed from AlarmState records (plant.alarm-state.v1: each carries its activation times of the last
24 h), at a given time, so the worker's metrics and the dashboard say the same:

- `per_10min`: activations in the last 10 minutes (ISA-18.2's target: about 1, at most 2 per operator);
  `avg_per_10min_24h`: the 24-hour average; `flood_share_24h`: the share of the day's 10-minute periods
  with more than 10 activations (an alarm flood; target under 1 %).
- `standing`: alarms whose condition is present now; `stale`: standing for more than 24 hours.
- `most_frequent`: the alarms with the most activations in 24 hours, with their share of all (ISA-18.2:
  the top 10 should not make up a large share).
- `chattering`: alarms that activated 3 or more times within one minute in the last 24 hours.
- `shelved`, `suppressed`, `out_of_service`: alarms set aside now.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

US = 1_000_000
TEN_MIN = 600 * US
DAY = 86_400 * US
CHATTER_N, CHATTER_WINDOW = 3, 60 * US
FLOOD = 10


def chattering(times: list[int]) -> bool:
    """Three or more activations within any one minute."""
    return any(times[i + CHATTER_N - 1] - times[i] <= CHATTER_WINDOW for i in range(len(times) - CHATTER_N + 1))


def figures(alarms: Iterable[Mapping[str, Any]], now_us: int, top: int = 10) -> dict[str, Any]:
    recent: Counter[str] = Counter()
    periods: Counter[int] = Counter()
    per_10min = standing = stale = shelved = suppressed = oos = 0
    chatter: list[str] = []
    for a in alarms:
        times = sorted(t for t in a.get("activations") or () if now_us - DAY < t <= now_us)
        name = a["alarm"]
        if times:
            recent[name] = len(times)
            per_10min += sum(1 for t in times if t > now_us - TEN_MIN)
            for t in times:
                periods[(now_us - t) // TEN_MIN] += 1
            if chattering(times):
                chatter.append(name)
        if a.get("active"):
            standing += 1
            since = a.get("active_since")
            if since is not None and now_us - since > DAY:
                stale += 1
        state = a.get("state")
        shelved += state == "SHELVED"
        suppressed += state == "SUPPRESSED"
        oos += state == "OUT_OF_SERVICE"
    total = sum(recent.values())
    return {
        "per_10min": per_10min,
        "avg_per_10min_24h": total / 144,
        "flood_share_24h": sum(1 for n in periods.values() if n > FLOOD) / 144,
        "standing": standing,
        "stale": stale,
        "most_frequent": [{"alarm": name, "activations": n, "share": n / total} for name, n in recent.most_common(top)],
        "chattering": sorted(chatter),
        "shelved": shelved,
        "suppressed": suppressed,
        "out_of_service": oos,
        "activations_24h": total,
    }
