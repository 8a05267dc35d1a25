"""Machine state codes -> ISO 22400-2 time classes, and the shift calendar (planned operation time).

Pure functions over frozen, hashable specs built once from the config (see ``state_map`` and
``calendar``). The choices, with ISO 22400-2 (see /work/shared/KPI-NOTES.md) as the reference:

- RUNNING: the unit produces; its time is APT (actual production time).
- IDLE: ready but not producing (waiting for material, operator, ...). ISO counts such delays
  (ADET) inside planned busy time, so IDLE lowers availability.
- PLANNED_STOP: planned down time PDOT (planned maintenance, changeover in the plan); it is
  subtracted from planned operation time, so PBT = POT - PDOT does not include it.
- UNPLANNED_STOP(reason): actual down time ADOT, a failure; reported per reason for the Pareto.
- MICRO_STOP: an unplanned stop shorter than the asset's ``micro_stop_threshold_s``. It is not
  a failure: its time stays in APT (a performance loss, lowering effectiveness E = PRI x PQ / APT)
  rather than a downtime (which would lower availability). Only ``processors.oee`` can tell a
  micro-stop, because it needs the stop's duration; ``classify`` never returns it.

Shift calendar: POT (planned operation time) is the time inside shift occurrences; planned
breaks inside a shift are PDOT. Without shifts the plant is planned to run 24/7. Times of day are
local to each shift's IANA timezone, so a shift over a DST change is 7 or 9 hours long, as worked.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache, lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from plantstream.core.config import Asset, Shift

RUNNING = "RUNNING"
IDLE = "IDLE"
PLANNED_STOP = "PLANNED_STOP"
UNPLANNED_STOP = "UNPLANNED_STOP"
MICRO_STOP = "MICRO_STOP"
CLASSES = (RUNNING, IDLE, PLANNED_STOP, UNPLANNED_STOP)

# (class, reason); the reason is only meaningful for stops
Classified = tuple[str, str]
StateMap = dict[int, Classified]

# plantstream/simulators/modbus.py MachineState; the simulator serves no reason codes, so the code is the reason
DEFAULT_STATE_MAP: StateMap = {1: (RUNNING, ""), 2: (IDLE, ""), 3: (PLANNED_STOP, "3"), 4: (UNPLANNED_STOP, "4")}


def state_map(asset: Asset) -> StateMap:
    """The asset's code map (config ``state_codes``), else the simulator's 1-4 codes."""
    if not asset.state_codes:
        return dict(DEFAULT_STATE_MAP)
    return {c.code: (c.state.value, c.reason or str(c.code)) for c in asset.state_codes}


def classify(value: Any, codes: StateMap) -> Classified | None:
    """Time class of one machine_state sample value, or None when the value says nothing.

    Integers (and integral floats) go through the code map; a code the map lacks is an unplanned
    stop with reason ``unmapped:<code>`` (conservative: it never inflates APT, and the Pareto shows
    it so someone adds it to the map). A bool is a running flag (False = IDLE). A string names a
    class (the simulator serves ``state.name``, maybe truncated to the register length).
    """
    if isinstance(value, bool):
        return (RUNNING, "") if value else (IDLE, "")
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            return None
        value = int(value)
    if isinstance(value, int):
        return codes.get(value, (UNPLANNED_STOP, f"unmapped:{value}"))
    if isinstance(value, str):
        text = value.strip().upper().replace(" ", "_")
        if not text:
            return None
        hits = [c for c in CLASSES if c == text] or [c for c in CLASSES if c.startswith(text)]
        if len(hits) == 1:
            return (hits[0], text if hits[0] in (PLANNED_STOP, UNPLANNED_STOP) else "")
    return None


def is_micro_stop(duration_us: int, threshold_s: float) -> bool:
    """An unplanned stop shorter than the threshold is a micro-stop (threshold 0: never)."""
    return duration_us < threshold_s * 1_000_000


# --- the shift calendar -------------------------------------------------------------------------

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class ShiftSpec:
    name: str
    start: time
    end: time
    days: frozenset[int]  # weekday() of the local start date
    breaks: tuple[tuple[time, time], ...]
    tz: str


@dataclass(frozen=True)
class Occurrence:
    """One worked shift: [start, end) in UTC µs, with its planned breaks clipped to it."""

    name: str
    start: int
    end: int
    breaks: tuple[tuple[int, int], ...]


Calendar = tuple[ShiftSpec, ...]  # empty: planned to operate all the time


def calendar(shifts: list[Shift]) -> Calendar:
    return tuple(
        ShiftSpec(
            s.name,
            s.start,
            s.end,
            frozenset(_DAYS.index(d) for d in s.days),
            tuple((b.start, b.end) for b in s.breaks),
            s.timezone,
        )
        for s in shifts
    )


def _us(d: date, t: time, tz: ZoneInfo) -> int:
    return int(datetime.combine(d, t, tzinfo=tz).timestamp() * 1_000_000)


@cache
def _occurrence(spec: ShiftSpec, ordinal: int) -> Occurrence | None:
    day = date.fromordinal(ordinal)
    if day.weekday() not in spec.days:
        return None
    tz = ZoneInfo(spec.tz)
    end_day = day if spec.end > spec.start else day + timedelta(days=1)
    start, end = _us(day, spec.start, tz), _us(end_day, spec.end, tz)
    breaks = []
    for bs, be in spec.breaks:
        # a break time of day before the shift's start lies on the next day (night shifts)
        b_day = day if bs >= spec.start else day + timedelta(days=1)
        b_end_day = b_day if be > bs else b_day + timedelta(days=1)
        lo, hi = max(start, _us(b_day, bs, tz)), min(end, _us(b_end_day, be, tz))
        if lo < hi:
            breaks.append((lo, hi))
    return Occurrence(spec.name, start, end, tuple(sorted(breaks)))


_DAY_US = 86_400 * 1_000_000


def occurrences(cal: Calendar, t0: int, t1: int) -> list[Occurrence]:
    """Shift occurrences overlapping [t0, t1), by start time."""
    # one calendar lookup per UTC day range: this runs for every state span of every asset
    return [o for o in _occurrences_in_days(cal, t0 // _DAY_US, (t1 - 1) // _DAY_US) if o.start < t1 and o.end > t0]


@lru_cache(maxsize=4096)
def _occurrences_in_days(cal: Calendar, d0: int, d1: int) -> tuple[Occurrence, ...]:
    t0, t1 = d0 * _DAY_US, (d1 + 1) * _DAY_US
    out: list[Occurrence] = []
    for spec in cal:
        tz = ZoneInfo(spec.tz)
        first = datetime.fromtimestamp(t0 / 1e6, UTC).astimezone(tz).date().toordinal() - 1
        last = datetime.fromtimestamp(t1 / 1e6, UTC).astimezone(tz).date().toordinal()
        for o in range(first, last + 1):
            occ = _occurrence(spec, o)
            if occ is not None and occ.start < t1 and occ.end > t0:
                out.append(occ)
    return tuple(sorted(out, key=lambda o: (o.start, o.name)))


OFF = "OFF"  # outside every shift: not planned operation time
BREAK = "BREAK"  # planned break inside a shift (PDOT)
SHIFT = "SHIFT"  # planned operation time


def segments(cal: Calendar, t0: int, t1: int) -> list[tuple[int, int, str, Occurrence | None]]:
    """[t0, t1) cut into pieces (a, b, OFF|BREAK|SHIFT, occurrence); overlapping shifts: the earlier wins."""
    if not cal:
        return [(t0, t1, SHIFT, None)]
    occs = occurrences(cal, t0, t1)
    cuts = {t0, t1}
    for occ in occs:
        cuts |= {occ.start, occ.end, *(x for b in occ.breaks for x in b)}
    points = sorted(c for c in cuts if t0 <= c <= t1)
    out: list[tuple[int, int, str, Occurrence | None]] = []
    for a, b in itertools.pairwise(points):
        at: Occurrence | None = next((o for o in occs if o.start <= a < o.end), None)
        if at is None:
            status = OFF
        elif any(bs <= a < be for bs, be in at.breaks):
            status = BREAK
        else:
            status = SHIFT
        if out and out[-1][2] == status and out[-1][3] == at and out[-1][1] == a:
            out[-1] = (out[-1][0], b, status, at)
        else:
            out.append((a, b, status, at))
    return out


def occurrence_at(cal: Calendar, t: int) -> Occurrence | None:
    """The shift occurrence containing t (breaks included), or None."""
    return next((o for o in occurrences(cal, t, t + 1) if o.start <= t < o.end), None)
