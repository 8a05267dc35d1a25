"""The progress watchdog: a worker that holds partitions but makes no progress on them exits.

Contract: `Watchdog.observe(now, work)` takes, for each watched thing (a readings partition, or the
table recovery), its position and how far the broker says it could go. A thing is stalled while it
has work waiting (end > position) and its position does not move; `stuck()` names those stalled for
longer than `stall_after_s`. `unknown()` (the broker did not answer) restarts every clock: the
broker must be seen holding records for the whole period. `excuse(names)` restarts some clocks
(readings partitions wait while a table recovery progresses). The worker turns a non-empty
`stuck()` into an exit with a message naming the partitions (`plantstream up` restarts it):
whatever was processed and not committed is processed again, as after a kill.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(slots=True)
class Stalled:
    since: float  # since when it has had work waiting at this position
    position: int
    end: int


class Watchdog:
    def __init__(self, stall_after_s: float) -> None:
        self.stall_after_s = stall_after_s
        self._seen: dict[str, Stalled] = {}

    def observe(self, now: float, work: Mapping[str, tuple[int, int]]) -> None:
        """`work`: name -> (position, end) for everything this worker holds now."""
        seen = self._seen
        for name in set(seen) - set(work):
            del seen[name]  # not held any more
        for name, (position, end) in work.items():
            was = seen.get(name)
            if end <= position:
                seen.pop(name, None)  # nothing waiting: not stalled
            elif was is None or was.position != position:
                seen[name] = Stalled(now, position, end)  # work waiting, and it just moved (or is new)
            else:
                was.end = end

    def unknown(self) -> None:
        self._seen.clear()

    def excuse(self, now: float, names: Iterable[str]) -> None:
        for name in names:
            was = self._seen.get(name)
            if was is not None:
                was.since = now

    def stuck(self, now: float) -> dict[str, Stalled]:
        return {name: s for name, s in self._seen.items() if now - s.since > self.stall_after_s}

    def progressed(self, name: str, now: float, within_s: float) -> bool:
        """Did `name` move (or have nothing waiting) within the last `within_s` seconds?"""
        s = self._seen.get(name)
        return s is None or now - s.since <= within_s


def describe(stuck: Mapping[str, Stalled], now: float) -> str:
    return "; ".join(
        f"{name} at {s.position} of {s.end} for {now - s.since:.0f} s" for name, s in sorted(stuck.items())
    )
