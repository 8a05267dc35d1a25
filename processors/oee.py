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
  or no ideal cycle time; QR = GQ / PQ. OEE = A x E x QR = PRI x GQ / PBT, defined whenever PBT > 0
  and PRI is known: a window with planned busy time in which the machine made nothing good reads 0
  (E and QR may stay null there), so averages and dashboards never skip the worst windows. E is not
  clipped at 1: a value above 1 says the configured ideal cycle time is too slow. OEE over a shift or
  any longer span comes from the summed times and counts (the shift buckets here, `combine` for
  records), never from averaging window ratios.
- Silence is not running: the last state holds for at most ``silence_us`` (the asset's expected
  reporting interval and slack, plantstream.core.reporting) after the asset's last report (a frame
  with a GOOD sample). Beyond that there is no data: the time counts in no time class (neither
  production nor downtime), the state is unknown until the next GOOD state sample, and each record
  says which share of its window had data (``data_coverage``). Within the limit a report-by-exception
  silence keeps the last state, as before. An unplanned stop cut short by missing data is judged by
  its observed length.
- Failures: unplanned stops (not micro-stops) counted in the window/shift where they began;
  MTBF = APT / failures, MTTR = unplanned down time / failures (per period, null without failures).

Micro-stops need the stop's length, known only when it ends or passes the threshold, so windows
after the start of a still-unclassified stop are held open (at most ``micro_stop_threshold_s``).
Windows close with the rule of processors/event_windows.py: end <= newest event time - grace; an
asset that went silent has its event time moved on with the wall clock by ``advance_idle``.

Corrections: ``advance_idle`` keeps a copy of the state as it was before the silence (``snap``).
When the data turns out to have been delayed, not missing (a producer cut off from Kafka delivers its
store-and-forward buffer), the first frame inside the stretch the silence closed rolls the state back
to that copy and goes on from there, within ``allowed_lateness`` of the watermark: the windows closed
by the silence are emitted again, as the full data gives them, with ``revision`` one higher.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

from plantstream.core import machine_state as ms
from plantstream.core import reporting
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
    silence_us: int | None = None  # the last state holds this long after a report; None: without limit

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
        reporting.silence_us(settings, asset),
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
        "seen": None,  # scan time of the newest report (a frame with a GOOD sample)
        "gap": None,  # no data since this event time (state unknown); None while data flows
        "snap": None,  # the state before the current silence's first idle close (see the module doc)
        "revs": {},  # bucket key -> revision last emitted, for buckets that may be emitted again
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


def apply_frame(
    state: OeeState,
    frame: dict[str, Any],
    profile: AssetProfile,
    size: int,
    grace: int,
    allowed_lateness: int | None = None,
) -> list[dict]:
    """Add a frame (event time, µs); return the OeeWindow records of windows and shifts that closed.

    ``allowed_lateness``: how far behind the watermark a delayed frame may still roll back a silence
    (see the module doc); None: without limit."""
    if "revs" not in state:  # a state written before silences and corrections were kept
        _upgrade(state)
    t_frame = frame["scan_time"]
    if state["snap"] is not None:
        _resolve_silence(state, t_frame, allowed_lateness)
    if profile.silence_us is not None:
        _silence(state, profile, t_frame, size)
    report = False
    for s in frame["samples"]:
        if s["quality"] != "GOOD":
            continue  # a BAD state sample holds the last known state (within silence_us); a BAD counter is skipped
        report = True
        tag, t = s["tag"], s["source_time"]
        if tag in profile.state_tags:
            c = ms.classify(s["value"], profile.codes)
            if c is not None:
                _on_state(state, profile, t, c[0], c[1], size)
        elif tag in profile.counters:
            v = _number(s["value"])
            if v is not None:
                _on_counter(state, profile, tag, t, v, size)
    if report and (state["seen"] is None or t_frame >= state["seen"]):
        state["seen"], state["gap"] = t_frame, None
    newest = max([t_frame, *(s["source_time"] for s in frame["samples"])])
    if state["max_t"] is None or newest > state["max_t"]:
        state["max_t"] = newest
    wm = state["max_t"] - grace
    if state["wm"] is None or wm > state["wm"]:
        state["wm"] = wm  # never backwards (advance_idle may have moved it further)
    return close_until(state, profile, size, state["wm"])


def _upgrade(state: OeeState) -> None:
    for key, value in (("seen", None), ("gap", None), ("snap", None), ("revs", {})):
        state.setdefault(key, value)


def _silence(state: OeeState, profile: AssetProfile, t: int, size: int) -> None:
    """At event time t, is the asset's data missing (no report for longer than silence_us)? Then the
    last state holds up to the last report + silence_us, and from there on the state is unknown."""
    limit, seen = profile.silence_us, state["seen"]
    if limit is None or seen is None or state["gap"] is not None:
        return
    until = seen + limit
    if t <= until:
        return
    cur = state["state"]
    if cur is not None:
        if cur[0] < until:
            _attribute(state, profile, cur[0], until, size)
        if cur[1] == ms.UNPLANNED_STOP:
            _end_stop(state)  # its observed length decides: under the threshold it was a micro-stop
    state["state"] = None
    state["gap"] = until


def _snapshot(state: OeeState) -> dict[str, Any]:
    return copy.deepcopy({k: v for k, v in state.items() if k not in ("snap", "revs")})


def _resolve_silence(state: OeeState, t: int, allowed_lateness: int | None) -> None:
    """A frame at t after the idle timer closed windows: roll back to the state before the silence when
    t falls inside what the silence closed (the data was delayed, not missing), else forget the copy."""
    snap = state["snap"]
    if snap["closed_until"] is not None and t <= snap["closed_until"]:
        return  # late even before the silence: nothing to correct, keep the copy for what follows
    closed = state["closed_until"]
    if closed is not None and t <= closed and (allowed_lateness is None or state["wm"] - t <= allowed_lateness):
        revs = state["revs"]
        state.clear()
        state.update(snap)
        state["snap"], state["revs"] = None, revs
        return
    _forget_silence(state)


def _forget_silence(state: OeeState) -> None:
    state["snap"] = None
    # emitted buckets can be emitted again only through a rollback: keep the revisions of open ones
    state["revs"] = {k: v for k, v in state["revs"].items() if k in state["buckets"]}


def advance_idle(
    state: OeeState,
    profile: AssetProfile,
    size: int,
    grace: int,
    idle_us: int,
    allowed_lateness: int | None = None,
) -> list[dict]:
    """Close the windows and shifts of an asset silent for ``idle_us`` of wall time, as if its event time
    had moved on as much (watermark = last event time + idle_us - grace); nothing while idle_us <= grace.

    The silent stretch up to the watermark goes to the last known state, as a frame repeating that
    state at the watermark would give it, but for at most ``silence_us`` after the last report: beyond
    that the data is missing (the module doc). Why hold at all: ISO 22400-2 time elements follow the
    work unit's state, and a short silence says the data stopped, not the machine (with report by
    exception an unchanged state is not sent at all); the step hold is also what ``close_until`` does
    for a silent state signal, so a window gets the same figures whether it is closed by the idle timer
    or by a later frame. An unplanned stop grows while silent: once past the micro-stop threshold it is
    a failure and its windows close; until then it holds them, as in apply_frame.

    The state before the first idle close of a silence is kept (``snap``): if the data then arrives
    late (store and forward), apply_frame rolls back to it and the closed windows are emitted again. The
    copy is dropped once the silence is longer than ``allowed_lateness``.
    """
    if "revs" not in state:
        _upgrade(state)
    if state["max_t"] is None or idle_us <= grace:
        return []
    if state["snap"] is not None and allowed_lateness is not None and idle_us > allowed_lateness:
        _forget_silence(state)  # data this late would go to the late topic anyway
    # max_t stays the last real event time: the silence counts from it. The watermark goes no further
    # than the end of the window of the last event (plus the micro-stop threshold while a stop is
    # being timed, so a silent stop can still become a failure): a silent asset gets its open windows
    # closed, not a new window for every stretch of silence, which would make the output depend on
    # how long the wall clock ran and a replay differ from the live run. Windows and a shift that end
    # later stay open until data comes back.
    last = state["max_t"]
    end = last - last % size + size
    gap = state["gap"]
    if gap is not None:  # the held state reached up to the gap: that window must close too
        end = max(end, (gap - 1) - (gap - 1) % size + size)
    cap = end + (profile.micro_stop_us if state["stop"] is not None else 0)
    wm = min(last + idle_us - grace, cap)
    if state["wm"] is not None and wm <= state["wm"]:
        return []
    if state["snap"] is None and (allowed_lateness is None or idle_us <= allowed_lateness):
        state["snap"] = _snapshot(state)
    state["wm"] = wm
    _silence(state, profile, wm, size)
    cur = state["state"]
    if cur is not None and cur[0] < wm:
        # not through close_until's hold alone: that stops at an unclassified stop's start, so a stop
        # that went silent would never become a failure and its windows would stay open for ever
        _on_state(state, profile, wm, cur[1], cur[2], size)
    return close_until(state, profile, size, wm)


def close_until(state: OeeState, profile: AssetProfile, size: int, watermark: int) -> list[dict]:
    """Emit, once, every bucket that ends at or before the watermark (held at an unclassified stop's start)."""
    if profile.silence_us is not None:
        _silence(state, profile, watermark, size)
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
    buckets = state["buckets"]
    done = sorted(
        (k for k, b in buckets.items() if b["end"] <= watermark),
        key=lambda k: (buckets[k]["end"], buckets[k]["start"], k),
    )
    if not done:
        return []
    revs = state.get("revs")
    out = []
    for k in done:
        rev = 0
        if revs is not None:
            rev = revs.pop(k, -1) + 1
            if state["snap"] is not None:  # a rollback may emit it again
                revs[k] = rev
        out.append(record(profile, buckets.pop(k), rev))
    return out


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


def oee_index(
    a: float | None, e: float | None, qr: float | None, pbt_s: float, gq: float, pri_s: float | None
) -> float | None:
    """OEE = A x E x QR = PRI x GQ / PBT (ISO 22400-2): defined whenever PBT > 0 and PRI is known, so a
    window with planned busy time in which nothing good was made reads 0 though E or QR is undefined."""
    if a is not None and e is not None and qr is not None:
        return a * e * qr
    return pri_s * gq / pbt_s if pri_s and pbt_s > 0 else None


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
        "oee": oee_index(a, e, qr, pbt, gq, pri_s),
        "scrap_ratio": _ratio(sq, pq),
        "failures": failures,
        "mtbf_s": apt / failures if failures else None,
        "mttr_s": t[ms.UNPLANNED_STOP] / US / failures if failures else None,
    }


def coverage(b: Bucket) -> float:
    """Share of a bucket's span whose machine state was known (every attributed microsecond)."""
    span = b["end"] - b["start"]
    return min(1.0, sum(b["t"].values()) / span) if span > 0 else 0.0


def record(profile: AssetProfile, b: Bucket, revision: int = 0) -> dict[str, Any]:
    """The OeeWindow record (schemas/oee_window.avsc) of one closed window or shift."""
    return {
        "asset": profile.asset,
        "window_start": b["start"],
        "window_end": b["end"],
        "shift": b["shift"],
        **kpis(b["t"], b["q"], profile.roles, b["failures"], profile.ideal_cycle_time_s),
        "downtime_by_reason_s": {r: d / US for r, d in sorted(b["down"].items())},
        "revision": revision,
        "data_coverage": coverage(b),
    }


SUMMED = ("planned_busy_time_s", "actual_production_time_s", "produced_quantity", "good_quantity", "scrap_quantity")


def combine(records: list[dict[str, Any]], pri_s: float | None) -> dict[str, Any]:
    """OEE over a span (a shift, a day, a week) from the records of its non-overlapping windows: the
    times and counts are summed and the factors computed from the sums, never averaged."""
    tot = dict.fromkeys(SUMMED, 0.0)
    failures = 0
    for r in records:
        for k in SUMMED:
            tot[k] += float(r.get(k) or 0.0)
        failures += int(r.get("failures") or 0)
    pbt, apt = tot["planned_busy_time_s"], tot["actual_production_time_s"]
    pq, gq, sq = tot["produced_quantity"], tot["good_quantity"], tot["scrap_quantity"]
    a, qr = _ratio(apt, pbt), _ratio(gq, pq)
    e = _ratio(pri_s * pq, apt) if pri_s else None
    return {
        **tot,
        "availability": a,
        "effectiveness": e,
        "quality_ratio": qr,
        "oee": oee_index(a, e, qr, pbt, gq, pri_s),
        "scrap_ratio": _ratio(sq, pq),
        "failures": failures,
    }
