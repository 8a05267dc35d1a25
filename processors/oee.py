"""ISO 22400-2 OEE per asset, per event-time window and per shift, from ReadingFrames.

Everything here is pure: the per-asset state is one JSON-able dict (it lives in the processor's
changelog-backed Faust table) and ``apply_frame`` returns the OeeWindow records of the windows and
shifts that closed. Definitions (ISO 22400-2; /work/shared/KPI-NOTES.md):

- Time: the machine state holds from one GOOD state sample to the next (step, as historians do);
  the span is attributed to the earlier state and cut at window, shift and break boundaries.
  When a window closes while the state signal is silent, the last state is held up to the
  watermark. Time before the asset's first state sample is not observed and not counted.
- POT = time inside shifts (all the time without a calendar); PDOT = planned breaks + PLANNED_STOP;
  PBT = POT - PDOT = RUNNING + IDLE + UNPLANNED_STOP + MICRO_STOP time inside shifts outside breaks.
- APT = RUNNING + MICRO_STOP time (micro-stops are performance losses, see plantstream.core.machine_state).
- PQ / GQ / SQ from counter deltas (counter_total / counter_good / counter_scrap roles); with only
  good+scrap PQ = good + scrap, with only total+scrap GQ = total - scrap, with total+good SQ = PQ - GQ.
  A counter counts in the window (and shift) of the sample where it rose, breaks and off-shift too.
- A = APT / PBT, null when PBT = 0: an unplanned window says nothing about availability (one vendor
  reports 1 there, which inflates averages over idle weekends); E = PRI x PQ / APT, null when APT = 0
  or no ideal cycle time; QR = GQ / PQ; OEE = A x E x QR, null when any factor is null. E is not
  clipped at 1: a value above 1 says the configured ideal cycle time is too slow.
- Failures: unplanned stops (not micro-stops) counted in the window/shift where they began;
  MTBF = APT / failures, MTTR = unplanned down time / failures (per period, null without failures).

Micro-stops need the stop's length, known only when it ends or passes the threshold, so windows
after the start of a still-unclassified stop are held open (at most ``micro_stop_threshold_s``).
Windows close with the rule of processors/event_windows.py: end <= newest event time - grace; an
asset that went silent has its event time moved on with the wall clock by ``advance_idle``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from plantstream.core import machine_state as ms
from plantstream.core.config import Settings, TagRole, TagType

OeeState = dict[str, Any]
Bucket = dict[str, Any]

US = 1_000_000
TIME_KEYS = (ms.RUNNING, ms.IDLE, ms.PLANNED_STOP, ms.UNPLANNED_STOP, ms.MICRO_STOP, ms.BREAK, ms.OFF)
_ROLE_KEY = {TagRole.COUNTER_TOTAL: "total", TagRole.COUNTER_GOOD: "good", TagRole.COUNTER_SCRAP: "scrap"}
_BITS = {
    TagType.INT16: 16,
    TagType.UINT16: 16,
    TagType.INT32: 32,
    TagType.UINT32: 32,
    TagType.INT64: 64,
    TagType.UINT64: 64,
}
# a drop is a rollover only when the wrapped difference is under this share of the counter's range
ROLLOVER_SHARE = 1 / 16


@dataclass(frozen=True)
class AssetProfile:
    """What OEE needs to know about one asset, resolved once from the config."""

    asset: str
    state_tags: frozenset[str]
    counters: dict[str, tuple[str, int | float | None]]  # tag -> (total|good|scrap, modulus or None)
    codes: ms.StateMap = field(default_factory=lambda: dict(ms.DEFAULT_STATE_MAP))
    micro_stop_us: int = 0
    ideal_cycle_time_s: float | None = None
    calendar: ms.Calendar = ()

    @property
    def roles(self) -> frozenset[str]:
        return frozenset(r for r, _ in self.counters.values())


def profile_for(settings: Settings, asset: str) -> AssetProfile | None:
    """The asset's OEE profile, or None when the asset is unknown or has no machine_state tag."""
    try:
        a = settings.asset(asset)
    except KeyError:
        return None
    state_tags: set[str] = set()
    counters: dict[str, tuple[str, int | float | None]] = {}
    for t in settings.asset_tags(asset):
        if t.role is TagRole.MACHINE_STATE:
            state_tags.add(t.name)
        elif t.role in _ROLE_KEY:
            kind = getattr(t, "type", None)
            bits = _BITS.get(kind) if kind else None  # an OPC UA or replayed tag may leave its type unset
            modulus = (2**bits if t.scale == 1 else 2**bits * abs(t.scale)) if bits else None
            counters[t.name] = (_ROLE_KEY[t.role], modulus)
    if not state_tags:
        return None
    return AssetProfile(
        asset,
        frozenset(state_tags),
        counters,
        ms.state_map(a),
        int(a.micro_stop_threshold_s * US),
        a.ideal_cycle_time_s,
        ms.calendar(settings.plant.shifts),
    )


def counter_delta(prev: float, cur: float, modulus: int | float | None) -> float:
    """Parts counted between two readings of a cumulative counter; never negative.

    A drop is a rollover when the counter has a fixed width and the wrapped difference is small
    (under 1/16 of the range: it was near its top and is now near zero); any other drop is a PLC
    reset, and the parts made since the reset are the new value (a counter reset to 0 that now
    reads 5 made 5). Scaled counters wrap at range x scale. Integer readings stay integers, so
    64-bit counters are exact.
    """
    if cur >= prev:
        return cur - prev
    if modulus:
        wrapped = (cur - prev) % modulus
        if wrapped <= modulus * ROLLOVER_SHARE:
            return wrapped
    return max(cur, 0)


def new_state() -> OeeState:
    return {
        "wm": None,
        "max_t": None,
        "closed_until": None,  # every bucket ending at or before it has been emitted
        "state": None,  # [since_us, class, reason] of the last state sample
        "stop": None,  # the unplanned stop in progress, see _start_stop
        "counters": {},
        "buckets": {},
        "late": 0,
    }


def _new_bucket(start: int, end: int, shift: str) -> Bucket:
    return {
        "start": start,
        "end": end,
        "shift": shift,
        "t": dict.fromkeys(TIME_KEYS, 0),
        "down": {},
        "failures": 0,
        "q": {"total": 0.0, "good": 0.0, "scrap": 0.0},
    }


def _window_bucket(state: OeeState, t: int, size: int) -> Bucket:
    start = t - t % size
    key = f"w:{start}"
    b = state["buckets"].get(key)
    if b is None:
        b = state["buckets"][key] = _new_bucket(start, start + size, "")
    return b


def _shift_bucket(state: OeeState, occ: ms.Occurrence) -> Bucket:
    key = f"s:{occ.start}:{occ.name}"
    b = state["buckets"].get(key)
    if b is None:
        b = state["buckets"][key] = _new_bucket(occ.start, occ.end, occ.name)
    return b


def _buckets_at(state: OeeState, profile: AssetProfile, t: int, size: int) -> list[Bucket]:
    out = [_window_bucket(state, t, size)]
    occ = ms.occurrence_at(profile.calendar, t) if profile.calendar else None
    if occ is not None:
        out.append(_shift_bucket(state, occ))
    return out


def _count_failure(state: OeeState, profile: AssetProfile, size: int) -> None:
    stop = state["stop"]
    stop["kind"] = "failure"
    for b in _buckets_at(state, profile, stop["start"], size):
        b["failures"] += 1
    # the stop's time so far was held back until its kind was known
    for key, (dur, reason) in stop["pending"].items():
        b = state["buckets"][key]
        b["t"][ms.UNPLANNED_STOP] += dur
        b["down"][reason] = b["down"].get(reason, 0) + dur
    stop["pending"] = {}


def _end_stop(state: OeeState) -> None:
    stop = state["stop"]
    if stop is not None and stop["kind"] is None:
        for key, (dur, _reason) in stop["pending"].items():
            state["buckets"][key]["t"][ms.MICRO_STOP] += dur
    state["stop"] = None


def _attribute(state: OeeState, profile: AssetProfile, a: int, b: int, size: int) -> None:
    """Give [a, b) to the current state, cut at window, shift and break boundaries."""
    if b <= a:
        return
    _, cls, reason = state["state"]
    stop = state["stop"]
    if cls == ms.UNPLANNED_STOP and stop is not None:
        stop["dur"] += b - a
        if stop["kind"] is None and stop["dur"] >= profile.micro_stop_us:
            _count_failure(state, profile, size)
    for x, y, status, occ in ms.segments(profile.calendar, a, b):
        while x < y:
            cut = min(y, x - x % size + size)
            targets = [_window_bucket(state, x, size)]
            if occ is not None:
                targets.append(_shift_bucket(state, occ))
            d = cut - x
            for bk in targets:
                if status != ms.SHIFT:
                    bk["t"][status] += d  # OFF or BREAK, whatever the machine did
                elif cls != ms.UNPLANNED_STOP or stop is None:
                    bk["t"][cls] += d
                elif stop["kind"] == "failure":
                    bk["t"][ms.UNPLANNED_STOP] += d
                    bk["down"][reason] = bk["down"].get(reason, 0) + d
                else:
                    key = f"w:{bk['start']}" if not bk["shift"] else f"s:{bk['start']}:{bk['shift']}"
                    held = stop["pending"].setdefault(key, [0, reason])
                    held[0] += d
            x = cut


def _on_state(state: OeeState, profile: AssetProfile, t: int, cls: str, reason: str, size: int) -> None:
    cur = state["state"]
    if cur is None and state["closed_until"] is not None and t < state["closed_until"]:
        state["late"] += 1  # a first state sample inside an emitted window (the counters moved time on)
        return
    if cur is not None:
        if t < cur[0]:
            state["late"] += 1
            return
        _attribute(state, profile, cur[0], t, size)
        if (cur[1], cur[2]) == (cls, reason):
            cur[0] = t
            return
        if cur[1] == ms.UNPLANNED_STOP:
            _end_stop(state)
    state["state"] = [t, cls, reason]
    if cls == ms.UNPLANNED_STOP:
        state["stop"] = {"start": t, "reason": reason, "dur": 0, "kind": None, "pending": {}}
        if profile.micro_stop_us <= 0:
            _count_failure(state, profile, size)


def _on_counter(state: OeeState, profile: AssetProfile, tag: str, t: int, value: float, size: int) -> None:
    role, modulus = profile.counters[tag]
    prev = state["counters"].get(tag)
    state["counters"][tag] = value
    if prev is None:
        return  # the first reading is the baseline: what came before it is unknown
    delta = counter_delta(prev, value, modulus)
    if delta == 0:
        return
    closed = state["closed_until"]
    if closed is not None and t - t % size + size <= closed:
        state["late"] += 1  # its window was emitted already (its shift, if any, too or soon)
        return
    _window_bucket(state, t, size)["q"][role] += delta
    occ = ms.occurrence_at(profile.calendar, t) if profile.calendar else None
    if occ is not None and (closed is None or occ.end > closed):
        _shift_bucket(state, occ)["q"][role] += delta


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int):
        return value
    f = float(value)
    return f if math.isfinite(f) else None


def apply_frame(state: OeeState, frame: dict[str, Any], profile: AssetProfile, size: int, grace: int) -> list[dict]:
    """Add a frame (event time, µs); return the OeeWindow records of windows and shifts that closed."""
    for s in frame["samples"]:
        if s["quality"] != "GOOD":
            continue  # a BAD state sample holds the last known state; a BAD counter is skipped
        tag, t = s["tag"], s["source_time"]
        if tag in profile.state_tags:
            c = ms.classify(s["value"], profile.codes)
            if c is not None:
                _on_state(state, profile, t, c[0], c[1], size)
        elif tag in profile.counters:
            v = _number(s["value"])
            if v is not None:
                _on_counter(state, profile, tag, t, v, size)
    newest = max([frame["scan_time"], *(s["source_time"] for s in frame["samples"])])
    if state["max_t"] is None or newest > state["max_t"]:
        state["max_t"] = newest
    wm = state["max_t"] - grace
    if state["wm"] is None or wm > state["wm"]:
        state["wm"] = wm  # never backwards (advance_idle may have moved it further)
    return close_until(state, profile, size, state["wm"])


def advance_idle(state: OeeState, profile: AssetProfile, size: int, grace: int, idle_us: int) -> list[dict]:
    """Close the windows and shifts of an asset silent for ``idle_us`` of wall time, as if its event time
    had moved on as much (watermark = last event time + idle_us - grace); nothing while idle_us <= grace.

    The silent stretch up to the watermark goes to the last known state, as a frame repeating that
    state at the watermark would give it. Why: ISO 22400-2 time elements follow the work unit's state,
    and silence says the data stopped, not the machine (with report by exception an unchanged state is
    not resent at all); the step hold is also what ``close_until`` does for a silent state signal, so a
    window gets the same figures whether it is closed by the idle timer or by a later frame that
    repeats the state. The cost: a RUNNING machine whose data path died counts as producing until its
    data resumes. An unplanned stop grows while silent: once past the micro-stop threshold it is a
    failure and its windows close; until then it holds them, as in apply_frame (silence never ends a
    stop, so it never makes one a micro-stop).

    Frames after an idle close are handled as usual: ``closed_until`` keeps emitted windows and shifts
    from reopening (their samples are late, counted in ``late``), and the state is held only up to the
    watermark, so samples after it count normally.
    """
    if state["max_t"] is None or idle_us <= grace:
        return []
    # max_t stays the last real event time: the silence counts from it. The watermark goes no further
    # than the end of the window of the last event (plus the micro-stop threshold while a stop is
    # being timed, so a silent stop can still become a failure): a silent asset gets its open windows
    # closed, not a new window for every stretch of silence, which would make the output depend on
    # how long the wall clock ran and a replay differ from the live run. Windows and a shift that end
    # later stay open until data comes back.
    last = state["max_t"]
    cap = last - last % size + size + (profile.micro_stop_us if state["stop"] is not None else 0)
    wm = min(last + idle_us - grace, cap)
    if state["wm"] is not None and wm <= state["wm"]:
        return []
    state["wm"] = wm
    cur = state["state"]
    if cur is not None and cur[0] < wm:
        # not through close_until's hold alone: that stops at an unclassified stop's start, so a stop
        # that went silent would never become a failure and its windows would stay open for ever
        _on_state(state, profile, wm, cur[1], cur[2], size)
    return close_until(state, profile, size, wm)


def close_until(state: OeeState, profile: AssetProfile, size: int, watermark: int) -> list[dict]:
    """Emit, once, every bucket that ends at or before the watermark (held at an unclassified stop's start)."""
    stop = state["stop"]
    if stop is not None and stop["kind"] is None:
        watermark = min(watermark, stop["start"])
    cur = state["state"]
    if cur is not None and cur[0] < watermark:
        # the state signal is silent: hold the last state up to the watermark
        _attribute(state, profile, cur[0], watermark, size)
        cur[0] = watermark
    if state["closed_until"] is None or watermark > state["closed_until"]:
        state["closed_until"] = watermark
    done = sorted(
        (k for k, b in state["buckets"].items() if b["end"] <= watermark),
        key=lambda k: (state["buckets"][k]["end"], state["buckets"][k]["start"], k),
    )
    return [record(profile, state["buckets"].pop(k)) for k in done]


def quantities(q: dict[str, float], roles: frozenset[str]) -> tuple[float, float, float]:
    """(PQ, GQ, SQ) from the summed deltas of the counter roles the asset has."""
    total, good, scrap = q["total"], q["good"], q["scrap"]
    if "total" in roles:
        pq = total
        if "good" in roles:
            gq = good
            sq = scrap if "scrap" in roles else pq - gq
        elif "scrap" in roles:
            sq, gq = scrap, total - scrap
        else:
            gq, sq = total, 0.0
    elif "good" in roles:
        gq = good
        sq = scrap if "scrap" in roles else 0.0
        pq = gq + sq
    else:
        sq = scrap
        pq, gq = sq, 0.0
    # counters read at slightly different instants can disagree for a moment
    return max(pq, 0.0), max(gq, 0.0), max(sq, 0.0)


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def kpis(
    times_us: dict[str, int], q: dict[str, float], roles: frozenset[str], failures: int, pri_s: float | None
) -> dict[str, Any]:
    """ISO 22400-2 KPIs of one period from its accumulated times (µs), counts and failures."""
    t = times_us
    pbt = (t[ms.RUNNING] + t[ms.IDLE] + t[ms.UNPLANNED_STOP] + t[ms.MICRO_STOP]) / US
    apt = (t[ms.RUNNING] + t[ms.MICRO_STOP]) / US
    pq, gq, sq = quantities(q, roles)
    a = _ratio(apt, pbt)
    e = _ratio(pri_s * pq, apt) if pri_s else None
    qr = _ratio(gq, pq)
    return {
        "planned_busy_time_s": pbt,
        "actual_production_time_s": apt,
        "produced_quantity": pq,
        "good_quantity": gq,
        "scrap_quantity": sq,
        "availability": a,
        "effectiveness": e,
        "quality_ratio": qr,
        "oee": a * e * qr if a is not None and e is not None and qr is not None else None,
        "scrap_ratio": _ratio(sq, pq),
        "failures": failures,
        "mtbf_s": apt / failures if failures else None,
        "mttr_s": t[ms.UNPLANNED_STOP] / US / failures if failures else None,
    }


def record(profile: AssetProfile, b: Bucket) -> dict[str, Any]:
    """The OeeWindow record (schemas/oee_window.avsc) of one closed window or shift."""
    return {
        "asset": profile.asset,
        "window_start": b["start"],
        "window_end": b["end"],
        "shift": b["shift"],
        **kpis(b["t"], b["q"], profile.roles, b["failures"], profile.ideal_cycle_time_s),
        "downtime_by_reason_s": {r: d / US for r, d in sorted(b["down"].items())},
    }
