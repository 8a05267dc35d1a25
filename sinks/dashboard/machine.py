"""What a machine is doing: its state by name and since when, the shift's state timeline, counter rates.

Pure functions over config and sample values (UTC microseconds). State names come from the asset's
`state_codes` through `plantstream.core.machine_state.classify`, the same mapping the processor's OEE uses.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from plantstream.core import machine_state as ms
from plantstream.core.config import Settings, TagRole

US = 1_000_000
NO_DATA = "NO_DATA"


@dataclass(frozen=True)
class AssetMachine:
    """The tags of one asset that say what it does."""

    state_tag: str | None
    counters: tuple[str, ...]
    codes: ms.StateMap = field(default_factory=dict)


def asset_machines(settings: Settings) -> dict[str, AssetMachine]:
    state_tag: dict[str, str] = {}
    counters: dict[str, list[str]] = {}
    counter_roles = {TagRole.COUNTER_TOTAL, TagRole.COUNTER_GOOD, TagRole.COUNTER_SCRAP}
    for d in settings.devices:
        for t in d.tags:
            if t.role == TagRole.MACHINE_STATE:
                state_tag.setdefault(d.asset, t.name)
            elif t.role in counter_roles:
                counters.setdefault(d.asset, []).append(t.name)
    return {
        a.path: AssetMachine(state_tag.get(a.path), tuple(counters.get(a.path, ())), ms.state_map(a))
        for a in settings.plant.assets
    }


def state_of(value: Any, codes: ms.StateMap) -> dict[str, Any] | None:
    """A machine_state value -> {state, reason, code}; None when the value says nothing (BAD, text noise)."""
    got = ms.classify(value, codes)
    if got is None:
        return None
    state, reason = got
    return {"state": state, "reason": reason, "code": value if isinstance(value, int | float | str) else None}


class StateTracker:
    """Per asset: the current state and the time it began, from live samples in time order per asset."""

    def __init__(self) -> None:
        self.current: dict[str, dict[str, Any]] = {}

    def take(self, asset: str, t: int, value: Any, codes: ms.StateMap) -> bool:
        """True if the asset's state changed (or was first seen)."""
        st = state_of(value, codes)
        if st is None:
            return False
        cur = self.current.get(asset)
        if cur is not None and (cur["state"], cur["reason"]) == (st["state"], st["reason"]):
            return False
        if cur is not None and t < cur["since"]:
            return False  # older than what we show (a historical frame): the timeline has it
        # first sighting: "since" is when the dashboard saw it, unless history says earlier (`seed`)
        self.current[asset] = {**st, "since": t, "since_known": cur is not None}
        return True

    def seed(self, asset: str, since: int) -> None:
        """The store's answer for when the current state began (the last change point of the timeline)."""
        cur = self.current.get(asset)
        if cur is not None and not cur["since_known"] and since <= cur["since"]:
            cur["since"] = since
            cur["since_known"] = True


def timeline(
    rows: Sequence[tuple[int, Any, int | None]],
    before: tuple[int, Any] | None,
    t0: int,
    t1: int,
    gap_us: int,
    codes: ms.StateMap,
) -> list[dict[str, Any]]:
    """State segments over [t0, t1) from change points.

    `rows` are (time, value, time of the previous sample) for the samples that start something: a new
    value, or the first after a silence; `before` is the last sample before t0. A silence longer than
    `gap_us` is NO_DATA from one gap after its last sample (the state held until then) to the next sample.
    Consecutive segments of one state merge."""
    out: list[dict[str, Any]] = []

    def add(a: int, b: int, state: str, reason: str = "") -> None:
        a, b = max(a, t0), min(b, t1)
        if b <= a:
            return
        if out and out[-1]["state"] == state and out[-1]["reason"] == reason and out[-1]["end"] == a:
            out[-1]["end"] = b
        else:
            out.append({"start": a, "end": b, "state": state, "reason": reason})

    cur: tuple[int, str, str] | None = None  # (start, state, reason) of the open segment
    if before is not None:
        st = state_of(before[1], codes)
        if st is not None:
            cur = (before[0], st["state"], st["reason"])
    for i, (t, value, prev) in enumerate(rows):
        prev_t = before[0] if prev is None and i == 0 and before is not None else prev
        if cur is not None:
            end = t
            if prev_t is not None and t - prev_t > gap_us:
                end = prev_t + gap_us
                add(cur[0], end, cur[1], cur[2])
                add(end, t, NO_DATA)
            else:
                add(cur[0], end, cur[1], cur[2])
        elif prev_t is None and t > t0 and not out:
            add(t0, t, NO_DATA)
        st = state_of(value, codes)
        cur = (t, st["state"], st["reason"]) if st is not None else None
    if cur is not None:
        add(cur[0], t1, cur[1], cur[2])  # open: `close_timeline` ends it where the samples end
    return out


def close_timeline(segments: list[dict[str, Any]], last_sample: int | None, now: int, gap_us: int) -> None:
    """End the open last segment one gap after the newest sample when samples stopped, NO_DATA after that."""
    if not segments or last_sample is None:
        return
    seg = segments[-1]
    if seg["state"] == NO_DATA or last_sample + gap_us >= seg["end"]:
        return
    end = max(seg["start"], last_sample + gap_us)
    seg["end"] = end
    segments.append({"start": end, "end": now, "state": NO_DATA, "reason": ""})
    if segments[-2]["end"] <= segments[-2]["start"]:
        del segments[-2]


def calendar_marks(cal: ms.Calendar, t0: int, t1: int) -> list[dict[str, Any]]:
    """Planned breaks and off-shift time over [t0, t1), drawn over the state strip."""
    return [
        {"start": a, "end": b, "kind": kind}
        for a, b, kind, _occ in ms.segments(cal, t0, t1)
        if kind in (ms.BREAK, ms.OFF)
    ]


def current_shift(cal: ms.Calendar, now: int, fallback_hours: float = 8.0) -> dict[str, Any]:
    """The shift occurrence running now; without a calendar (or between shifts) the last `fallback_hours`."""
    occ = ms.occurrence_at(cal, now) if cal else None
    if occ is None:
        start = now - int(fallback_hours * 3600 * US)
        note = "no shift now" if cal else "no shift calendar (plant.shifts)"
        return {"name": "", "start": start, "end": now, "breaks": [], "note": f"{note}: the last {fallback_hours:g} h"}
    breaks = [list(b) for b in occ.breaks]
    return {"name": occ.name, "start": occ.start, "end": occ.end, "breaks": breaks, "note": ""}


def last_shifts(cal: ms.Calendar, now: int, n: int) -> list[dict[str, Any]]:
    """The last `n` shift occurrences that ended before now, newest first."""
    if not cal:
        return []
    out: list[ms.Occurrence] = []
    lo = now
    for _ in range(8):  # look back a day at a time; a week holds any reasonable calendar's n shifts
        lo -= 86_400 * US
        out = [o for o in ms.occurrences(cal, lo, now) if o.end <= now]
        if len(out) >= n:
            break
    return [{"name": o.name, "start": o.start, "end": o.end} for o in sorted(out, key=lambda o: -o.start)[:n]]


# --- counters ----------------------------------------------------------------------------------


def counter_rate_per_min(points: Iterable[tuple[int, float]], span_us: int = 60 * US) -> float | None:
    """Parts per minute over the newest `span_us` of (time, total) points.

    Only rises count: a total that falls was reset or rolled over (the processor's OEE reads counters the
    same way), so the fall is skipped rather than read as negative production."""
    pts = list(points)
    if len(pts) < 2:
        return None
    newest = pts[-1][0]
    pts = [p for p in pts if p[0] >= newest - span_us] or pts[-2:]
    if len(pts) < 2:
        pts = pts[-2:]
    dt = pts[-1][0] - pts[0][0]
    if dt <= 0:
        return None
    rise = 0.0
    for (_, a), (_, b) in itertools.pairwise(pts):
        if math.isfinite(a) and math.isfinite(b) and b > a:
            rise += b - a
    return rise * 60 * US / dt


class CounterRates:
    """The last minutes of each counter tag's totals, from live frames."""

    def __init__(self, keep_us: int = 5 * 60 * US) -> None:
        self.keep_us = keep_us
        self.points: dict[tuple[str, str], deque[tuple[int, float]]] = {}

    def take(self, asset: str, tag: str, t: int, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return
        q = self.points.setdefault((asset, tag), deque())
        if q and t <= q[-1][0]:
            return
        q.append((t, float(value)))
        while q and q[0][0] < t - self.keep_us:
            q.popleft()

    def rates(self, asset: str, tags: Iterable[str]) -> dict[str, float | None]:
        return {tag: counter_rate_per_min(self.points.get((asset, tag), ())) for tag in tags}


def merge_state_rows(rows: Iterable[Mapping[str, Any]]) -> list[tuple[int, Any, int | None]]:
    """Store rows {ts, num, text, prev_ts} -> (time, value, previous time) for `timeline`."""
    return [(int(r["ts"]), r["num"] if r["num"] is not None else r["text"], r["prev_ts"]) for r in rows]
