"""OEE windows of an asset that went silent: oee.advance_idle (figures computed by hand in the comments).

Each idle close is also checked against apply_frame fed a frame that repeats the last state, so the
idle path cannot drift from the frame path it stands in for.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, time
from typing import Any

import pytest

from plantstream.core import machine_state as ms
from plantstream.core.config import Shift
from processors import oee

S = 1_000_000
T0 = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp()) * S  # a Thursday, 00:00 UTC
SIZE = 60 * S
GRACE = 5 * S


def profile(roles: dict[str, str], micro_s: float = 0.0, shifts: list[Shift] | None = None) -> oee.AssetProfile:
    return oee.AssetProfile(
        asset="a.b.c.d.e",
        state_tags=frozenset({"state"}),
        counters={tag: (role, 2**32) for tag, role in roles.items()},
        micro_stop_us=int(micro_s * S),
        ideal_cycle_time_s=2.0,
        calendar=ms.calendar(shifts or []),
    )


def frame(t_s: float, **values: Any) -> dict:
    t = T0 + int(t_s * S)
    return {
        "asset": "a.b.c.d.e",
        "scan_time": t,
        "samples": [{"tag": k, "source_time": t, "value": v, "quality": "GOOD"} for k, v in values.items()],
    }


def feed(p: oee.AssetProfile, frames: list[dict], size: int = SIZE, grace: int = GRACE) -> tuple[dict, list[dict]]:
    st = oee.new_state()
    out: list[dict] = []
    for f in frames:
        out += oee.apply_frame(st, f, p, size, grace)
        st = json.loads(json.dumps(st))  # as the Faust changelog stores it
    return st, out


def idle(st: dict, p: oee.AssetProfile, idle_s: float, size: int = SIZE, grace: int = GRACE) -> list[dict]:
    out = oee.advance_idle(st, p, size, grace, int(idle_s * S))
    json.dumps(st)  # the state stays JSON-able
    return out


def one(records: list[dict], start_s: int, shift: str = "") -> dict:
    hits = [r for r in records if r["window_start"] == T0 + start_s * S and r["shift"] == shift]
    assert len(hits) == 1, records
    return hits[0]


def keys(records: list[dict]) -> list[tuple[str, int]]:
    return [(r["shift"], r["window_start"]) for r in records]


def test_running_asset_that_goes_silent_closes_its_window() -> None:
    p = profile({"total": "total"})
    frames = [frame(0, state=1, total=0), frame(20, state=2), frame(30, state=1, total=10)]
    st, out = feed(p, frames)
    assert out == []  # watermark 30 - 5 = 25
    # watermark 30 + 34 - 5 = 59 < 60: still open
    assert idle(st, p, 34) == []
    # watermark 30 + 35 - 5 = 60: [0, 60) closes (end <= watermark)
    closed = idle(st, p, 35)
    r = one(closed, 0)
    assert len(closed) == 1
    # RUNNING 0-20 and 30-60 (held through the silence) = 50 s, IDLE 20-30 = 10 s
    # PBT = 60, APT = 50, A = 50/60; PQ = 10, E = 2 x 10 / 50 = 0.4; QR = 1; OEE = 1/3
    assert r["planned_busy_time_s"] == 60 and r["actual_production_time_s"] == 50
    assert r["availability"] == pytest.approx(50 / 60)
    assert r["produced_quantity"] == 10 and r["effectiveness"] == pytest.approx(0.4)
    assert r["oee"] == pytest.approx(50 / 60 * 0.4)
    assert r["failures"] == 0 and r["downtime_by_reason_s"] == {}
    # the same as a frame repeating the state at 65 s (watermark 60) would have closed
    _, want = feed(p, [*frames, frame(65, state=1)])
    assert closed == want
    # calling again without more silence changes nothing
    before = copy.deepcopy(st)
    assert idle(st, p, 35) == [] and st == before


def test_nothing_closes_while_silence_is_within_grace() -> None:
    p = profile({"total": "total"})
    st, out = feed(p, [frame(0, state=1, total=0), frame(60, state=1, total=5)])
    assert out == []  # watermark 55
    before = copy.deepcopy(st)
    for idle_s in (0, 1, 5):  # 5 s = the grace: would put the watermark at 60 and close [0, 60)
        assert idle(st, p, idle_s) == []
    assert st == before
    assert keys(idle(st, p, 5.000001)) == [("", T0)]  # 1 µs past the grace


def test_frames_after_an_idle_close_never_reemit_a_window() -> None:
    p = profile({"total": "total"})
    st, out = feed(p, [frame(0, state=1, total=0), frame(30, state=1, total=10)])
    # watermark 30 + 40 - 5 = 65, capped at 60: the end of the last event's window
    out += idle(st, p, 40)
    assert keys(out) == [("", T0)] and st["wm"] == T0 + 60 * S
    assert one(out, 0)["actual_production_time_s"] == 60
    assert idle(st, p, 400) == [], "more silence opens no new window"
    late_before = st["late"]
    for f in [
        frame(62, state=2, total=12),  # IDLE from 62 s; +2 in [60, 120), which is open
        # inside the emitted [0, 60): both samples are late; the counter baseline still moves to 14
        frame(50, state=4, total=14),
        frame(72, state=1, total=20),  # +6; RUNNING again
    ]:
        more = oee.apply_frame(st, f, p, SIZE, GRACE)
        assert more == [], f"{f} re-emitted {more}"
        st = json.loads(json.dumps(st))
        # frames older than the idle watermark never move it back (72 s moves it on to 67 s)
        assert st["wm"] == max(T0 + 60 * S, f["scan_time"] - GRACE)
    assert st["late"] == late_before + 2
    out += oee.apply_frame(st, frame(130, state=1), p, SIZE, GRACE)  # watermark 125
    assert keys(out) == [("", T0), ("", T0 + 60 * S)]
    r = one(out, 60)
    # [60, 120): RUNNING 60-62 and 72-120, IDLE 62-72: PBT 60, APT 50
    # PQ = 2 (at 62 s) + 6 (at 72 s) = 8; the late +2 at 50 s is counted nowhere; E = 2 x 8 / 50
    assert r["actual_production_time_s"] == 50 and r["availability"] == pytest.approx(50 / 60)
    assert r["produced_quantity"] == 8 and r["effectiveness"] == pytest.approx(16 / 50)
    # silence again: the next idle close counts from the newest frame (130 s), not from the old one
    assert idle(st, p, 40) == []  # watermark 130 + 40 - 5 = 165 < 180
    assert keys(idle(st, p, 55)) == [("", T0 + 120 * S)]  # watermark 180
    assert len(set(keys(out))) == len(out)


def test_unplanned_stop_that_goes_silent_becomes_a_failure_and_closes() -> None:
    p = profile({}, micro_s=30)
    frames = [frame(0, state=1), frame(40, state=4), frame(45, state=4)]
    st, out = feed(p, frames)
    assert out == []
    # watermark 45 + 20 - 5 = 60, but the stop (40-60, 20 s) is shorter than 30 s: it might still be a
    # micro-stop, so [0, 60) stays held at the stop's start
    assert idle(st, p, 20) == []
    # watermark 45 + 30 - 5 = 70: the stop is 30 s long, a failure; [0, 60) closes
    closed = idle(st, p, 30)
    r = one(closed, 0)
    assert len(closed) == 1
    # RUNNING 0-40 = 40 s, UNPLANNED 40-60 = 20 s: PBT 60, APT 40, A = 2/3; the failure began here
    assert r["planned_busy_time_s"] == 60 and r["actual_production_time_s"] == 40
    assert r["availability"] == pytest.approx(40 / 60)
    assert r["failures"] == 1 and r["mttr_s"] == 20 and r["mtbf_s"] == 40
    assert r["downtime_by_reason_s"] == {"4": 20.0}
    _, want = feed(p, [*frames, frame(75, state=4)])  # a frame repeating the stop: watermark 70
    assert closed == want
    # more silence: the watermark stops at 60 + 30 s (window end + micro-stop threshold), so [60, 120),
    # which no frame reached, stays open until data comes back
    assert idle(st, p, 80) == [] and st["wm"] == T0 + 90 * S
    # the machine restarts at 130 s: the stop lasted 90 s; [60, 120) is all stop: A = 0, no failure
    # begun there
    st = json.loads(json.dumps(st))
    r = one(oee.apply_frame(st, frame(130, state=1), p, SIZE, GRACE), 60)
    assert r["planned_busy_time_s"] == 60 and r["availability"] == 0
    assert r["failures"] == 0 and r["downtime_by_reason_s"] == {"4": 60.0}
    # [120, 180) has 10 s down, 50 s RUNNING
    r = one(oee.apply_frame(st, frame(185, state=1), p, SIZE, GRACE), 120)
    assert r["actual_production_time_s"] == 50 and r["downtime_by_reason_s"] == {"4": 10.0}


def test_unplanned_stop_without_micro_stop_threshold_closes_at_once() -> None:
    p = profile({})
    st, _ = feed(p, [frame(0, state=1), frame(40, state=4)])
    r = one(idle(st, p, 25), 0)  # watermark 40 + 25 - 5 = 60
    assert r["actual_production_time_s"] == 40 and r["failures"] == 1 and r["mttr_s"] == 20


def test_shift_boundary_passed_while_silent() -> None:
    shifts = [Shift(name="early", start=time(6), end=time(14)), Shift(name="late", start=time(14), end=time(22))]
    p = profile({"total": "total"}, shifts=shifts)
    hour = 3600 * S
    frames = [frame(13 * 3600 + 50 * 60, state=1, total=0), frame(13 * 3600 + 55 * 60, state=1, total=100)]
    st, out = feed(p, frames, size=hour)
    assert out == []
    # silent from 13:55; watermark 13:55 + 65 min 5 s - 5 s = 15:00, capped at 14:00 (the end of the last
    # event's window)
    closed = idle(st, p, 65 * 60 + 5, size=hour)
    # by end, then start: the early shift and [13:00, 14:00) both end at 14:00
    assert keys(closed) == [("early", T0 + 6 * hour), ("", T0 + 13 * hour)]
    early = one(closed, 6 * 3600, "early")
    # the early shift was observed 13:50-14:00 = 600 s RUNNING, with its 100 parts: E = 2 x 100 / 600
    assert early["window_end"] == T0 + 14 * hour
    assert early["planned_busy_time_s"] == 600 and early["availability"] == 1
    assert early["produced_quantity"] == 100 and early["effectiveness"] == pytest.approx(200 / 600)
    _, want = feed(p, [*frames, frame(14 * 3600 + 5, state=1)], size=hour)
    assert closed == want
    # silent on past 22:00: the late shift stays open, no window opens for the silence
    assert idle(st, p, 8 * 3600 + 5 * 60 + 5, size=hour) == []
    # data again at 22:00:05: the late shift closes with RUNNING held through it (PBT = APT = 8 h)
    st = json.loads(json.dumps(st))
    closed = oee.apply_frame(st, frame(22 * 3600 + 5, state=1), p, hour, GRACE)
    late = one(closed, 14 * 3600, "late")
    assert late["planned_busy_time_s"] == 8 * 3600 and late["availability"] == 1
    assert late["produced_quantity"] == 0 and late["effectiveness"] == 0
