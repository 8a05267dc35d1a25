"""OEE per window and shift: golden scenarios computed by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time
from typing import Any

import pytest

from plantstream.core import machine_state as ms
from plantstream.core.config import Asset, Settings, Shift, ShiftBreak, StateCode, load_config
from processors import oee

S = 1_000_000
T0 = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp()) * S  # a Thursday, 00:00 UTC
U32 = 2**32


def at(hh: int, mm: int = 0) -> int:
    """Seconds after T0 of a time of day on 2026-01-01."""
    return hh * 3600 + mm * 60


def profile(roles: dict[str, str], micro_s: float = 0.0, pri: float | None = 2.0, shifts: list[Shift] | None = None):
    return oee.AssetProfile(
        asset="a.b.c.d.e",
        state_tags=frozenset({"state"}),
        counters={tag: (role, U32) for tag, role in roles.items()},
        micro_stop_us=int(micro_s * S),
        ideal_cycle_time_s=pri,
        calendar=ms.calendar(shifts or []),
    )


def frame(t_s: float, **values: Any) -> dict:
    t = T0 + int(t_s * S)
    return {
        "asset": "a.b.c.d.e",
        "scan_time": t,
        "samples": [{"tag": k, "source_time": t, "value": v, "quality": "GOOD"} for k, v in values.items()],
    }


def run(p: oee.AssetProfile, frames: list[dict], size_s: int = 60, grace_s: float = 0) -> list[dict]:
    st = oee.new_state()
    out: list[dict] = []
    for f in frames:
        out += oee.apply_frame(st, f, p, size_s * S, int(grace_s * S))
        st = json.loads(json.dumps(st))  # as the Faust changelog stores it: a restart resumes exactly here
    return out


def one(records: list[dict], start_s: int, shift: str = "") -> dict:
    hits = [r for r in records if r["window_start"] == T0 + start_s * S and r["shift"] == shift]
    assert len(hits) == 1, records
    return hits[0]


def test_planned_stop_failure_and_quantities() -> None:
    p = profile({"total": "total", "scrap": "scrap"})
    recs = run(
        p,
        [
            frame(0, state=1, total=100, scrap=0),  # baselines
            frame(30, state=3, total=112, scrap=1),
            frame(40, state=4),
            frame(50, state=1),
            frame(59, state=1, total=116, scrap=1),
            frame(60, state=1),  # watermark 60 closes [0, 60)
        ],
    )
    r = one(recs, 0)
    # RUNNING 0-30 and 50-60 = 40 s, PLANNED 30-40 = 10 s (PDOT), UNPLANNED 40-50 = 10 s (a failure)
    # PBT = 60 - 10 = 50, APT = 40, A = 40/50 = 0.8
    assert r["planned_busy_time_s"] == 50 and r["actual_production_time_s"] == 40
    assert r["availability"] == pytest.approx(0.8)
    # PQ = 116 - 100 = 16, SQ = 1, GQ = PQ - SQ = 15 (total + scrap counters)
    assert (r["produced_quantity"], r["good_quantity"], r["scrap_quantity"]) == (16, 15, 1)
    # E = PRI x PQ / APT = 2 x 16 / 40 = 0.8; QR = 15/16 = 0.9375; OEE = 0.8 x 0.8 x 0.9375 = 0.6
    assert r["effectiveness"] == pytest.approx(0.8)
    assert r["quality_ratio"] == pytest.approx(0.9375)
    assert r["oee"] == pytest.approx(0.6)
    assert r["scrap_ratio"] == pytest.approx(1 / 16)
    # one failure: MTBF = APT / 1 = 40, MTTR = 10 / 1 = 10; the simulator's code 4 is the reason
    assert r["failures"] == 1 and r["mtbf_s"] == 40 and r["mttr_s"] == 10
    assert r["downtime_by_reason_s"] == {"4": 10.0}
    assert r["shift"] == "" and r["window_end"] - r["window_start"] == 60 * S
    assert len(recs) == 1


def test_micro_stops_are_performance_losses_and_hold_the_window() -> None:
    p = profile({"total": "total"}, micro_s=5)
    frames = [
        frame(0, state=1),
        frame(10, state=4),
        frame(13, state=1),  # 3 s < 5 s: micro-stop
        frame(20, state=4),
        frame(28, state=1),  # 8 s >= 5 s: a failure
        frame(58, state=4),  # still unclassified when the watermark passes 60
        frame(60, state=4),
    ]
    st = oee.new_state()
    out = []
    for f in frames:
        out += oee.apply_frame(st, f, p, 60 * S, 0)
    assert out == [], "the window must wait until the stop at 58 s is classified"
    out = oee.apply_frame(st, frame(61, state=1), p, 60 * S, 0)  # 3 s: micro-stop
    r = one(out, 0)
    # RUNNING 0-10, 13-20, 28-58 = 47 s; MICRO 10-13 and 58-60 = 5 s; UNPLANNED 20-28 = 8 s
    # PBT = 47 + 5 + 8 = 60; APT = 47 + 5 = 52 (micro-stops stay in APT); A = 52/60
    assert r["planned_busy_time_s"] == 60 and r["actual_production_time_s"] == 52
    assert r["availability"] == pytest.approx(52 / 60)
    assert r["failures"] == 1 and r["mttr_s"] == 8 and r["mtbf_s"] == 52
    assert r["downtime_by_reason_s"] == {"4": 8.0}
    # no parts: PQ = 0, E = 2 x 0 / 52 = 0, QR null; OEE = PRI x GQ / PBT = 0 (defined: PBT > 0)
    assert r["effectiveness"] == 0 and r["quality_ratio"] is None and r["oee"] == 0


def test_long_stop_is_a_failure_once_it_passes_the_threshold() -> None:
    p = profile({}, micro_s=5)
    # stop from 50 s; at 56 s it is 6 s long: a failure, so [0, 60) need not wait for its end
    recs = run(p, [frame(0, state=1), frame(50, state=4), frame(56, state=4), frame(60, state=4)])
    r = one(recs, 0)
    # RUNNING 0-50 = 50, UNPLANNED 50-60 = 10: PBT 60, APT 50, 1 failure begun in this window
    assert r["actual_production_time_s"] == 50 and r["failures"] == 1 and r["mttr_s"] == 10


def test_counter_delta_rollover_and_reset() -> None:
    assert oee.counter_delta(10, 15, U32) == 5
    # uint32 rollover: 4294967290 -> 5 wraps: (2^32 - 4294967290) + 5 = 6 + 5 = 11
    assert oee.counter_delta(4294967290, 5, U32) == 11
    # uint16 rollover: 65530 -> 10: 6 + 10 = 16
    assert oee.counter_delta(65530, 10, 2**16) == 16
    # uint64: 2^64 - 1 -> 2 is 3 parts
    assert oee.counter_delta(2**64 - 1, 2, 2**64) == 3
    # PLC reset: 1000 -> 3 wraps to 2^32 - 997, far more than 1/16 of the range: reset, 3 parts since
    assert oee.counter_delta(1000, 3, U32) == 3
    # a reset from the upper half is still a reset (wrapped 1.29e9 > 2^32/16 = 2.7e8)
    assert oee.counter_delta(3e9, 5, U32) == 5
    # no width (float counter): any drop is a reset; never negative
    assert oee.counter_delta(10.5, 3.0, None) == 3.0
    assert oee.counter_delta(10, -4, None) == 0


def test_rollover_and_reset_in_a_window() -> None:
    p = profile({"total": "total"})
    recs = run(
        p,
        [
            frame(0, state=1, total=4294967290),
            frame(10, state=1, total=5),  # +11 (rollover)
            frame(20, state=1, total=20),  # +15
            frame(30, state=1, total=3),  # +3 (reset)
            frame(40, state=1, total=10),  # +7
            frame(60, state=1),
        ],
    )
    r = one(recs, 0)
    # PQ = 11 + 15 + 3 + 7 = 36; E = 2 x 36 / 60 = 1.2 (not clipped); QR = 1 (total only)
    assert r["produced_quantity"] == 36 and r["good_quantity"] == 36 and r["scrap_quantity"] == 0
    assert r["effectiveness"] == pytest.approx(1.2) and r["quality_ratio"] == 1


def test_shift_boundary() -> None:
    shifts = [
        Shift(name="early", start=time(6), end=time(14)),
        Shift(name="late", start=time(14), end=time(22)),
    ]
    p = profile({"total": "total"}, shifts=shifts)
    recs = run(
        p,
        [
            frame(at(13, 50), state=1, total=0),
            frame(at(13, 59), state=1, total=300),  # 300 parts in the early shift
            frame(at(14, 5), state=1, total=400),  # 100 in the late shift
            frame(at(14, 10), state=4),
            frame(at(14, 20), state=1),
            frame(at(15), state=1),
        ],
        size_s=3600,
    )
    early = one(recs, at(6), "early")
    # first state sample 13:50: the early shift observed 13:50-14:00 = 600 s RUNNING
    assert early["window_end"] == T0 + at(14) * S
    assert early["planned_busy_time_s"] == 600 and early["availability"] == 1
    # E = 2 x 300 / 600 = 1.0
    assert early["produced_quantity"] == 300 and early["effectiveness"] == pytest.approx(1.0)
    w13 = one(recs, at(13))
    assert w13["produced_quantity"] == 300 and w13["planned_busy_time_s"] == 600
    w14 = one(recs, at(14))
    # 14:00-15:00: RUNNING 600 + 2400 = 3000, UNPLANNED 600: A = 3000/3600, one failure
    assert w14["actual_production_time_s"] == 3000 and w14["planned_busy_time_s"] == 3600
    assert w14["availability"] == pytest.approx(3000 / 3600) and w14["failures"] == 1
    assert w14["produced_quantity"] == 100
    # the late shift (14:00-22:00) is still open at watermark 15:00
    assert {(r["shift"], r["window_start"]) for r in recs} == {
        ("early", T0 + at(6) * S),
        ("", T0 + at(13) * S),
        ("", T0 + at(14) * S),
    }


def test_break_window_has_zero_pbt_and_off_shift_is_not_planned() -> None:
    shifts = [Shift(name="early", start=time(6), end=time(14), breaks=[ShiftBreak(start=time(10), end=time(10, 30))])]
    p = profile({}, shifts=shifts)
    recs = run(p, [frame(at(9, 50), state=1), frame(at(10, 40), state=1), frame(at(14, 30), state=1)], size_s=1800)
    # [09:30, 10:00): RUNNING 09:50-10:00 = 600 s
    assert one(recs, at(9, 30))["planned_busy_time_s"] == 600
    brk = one(recs, at(10))
    # [10:00, 10:30) is the planned break: PDOT = POT, PBT = 0 -> availability null (not 1, not 0)
    assert brk["planned_busy_time_s"] == 0 and brk["actual_production_time_s"] == 0
    assert brk["availability"] is None and brk["effectiveness"] is None and brk["oee"] is None
    # [14:00, 14:30) is outside every shift: no planned time either
    assert one(recs, at(14))["planned_busy_time_s"] == 0
    early = one(recs, at(6), "early")
    # early shift observed 09:50-14:00 = 15000 s, minus the 1800 s break: PBT = APT = 13200
    assert early["planned_busy_time_s"] == 13200 and early["availability"] == 1


def test_window_with_no_production() -> None:
    p = profile({"good": "good", "scrap": "scrap"})
    recs = run(p, [frame(0, state=2, good=5, scrap=1), frame(60, state=2, good=5, scrap=1)])
    r = one(recs, 0)
    # IDLE all window: PBT = 60, APT = 0 -> A = 0; PQ = 0 -> E, QR and scrap ratio null; OEE = PRI x GQ / PBT
    # = 0: a down window with planned busy time is the worst window, not an undefined one (ISO 22400-2)
    assert r["planned_busy_time_s"] == 60 and r["availability"] == 0
    assert r["produced_quantity"] == 0 and r["effectiveness"] is None and r["quality_ratio"] is None
    assert r["scrap_ratio"] is None and r["oee"] == 0 and r["failures"] == 0 and r["mtbf_s"] is None


def test_quantities_from_the_roles_present() -> None:
    q = {"total": 10.0, "good": 7.0, "scrap": 2.0}
    assert oee.quantities(q, frozenset({"total", "good", "scrap"})) == (10, 7, 2)
    assert oee.quantities(q, frozenset({"total", "good"})) == (10, 7, 3)  # SQ = PQ - GQ
    assert oee.quantities(q, frozenset({"total", "scrap"})) == (10, 8, 2)  # GQ = total - scrap
    assert oee.quantities(q, frozenset({"good", "scrap"})) == (9, 7, 2)  # PQ = good + scrap
    assert oee.quantities(q, frozenset({"good"})) == (7, 7, 0)


def test_gap_in_state_signal_holds_last_state_and_late_samples_are_dropped() -> None:
    p = profile({"total": "total"})
    st = oee.new_state()
    out = oee.apply_frame(st, frame(0, state=1, total=0), p, 60 * S, 0)
    # frames without a state sample (e.g. BAD quality) still move event time on
    out += oee.apply_frame(st, frame(125, total=10), p, 60 * S, 0)
    assert [r["window_start"] for r in out] == [T0, T0 + 60 * S]
    assert all(r["actual_production_time_s"] == 60 for r in out)
    late = oee.apply_frame(st, frame(100, state=4, total=12), p, 60 * S, 0)
    # the state sample lies behind the held state, the counter in the emitted window [60, 120)
    assert late == [] and st["late"] == 2
    assert st["counters"]["total"] == 12  # the baseline still moves, so nothing is counted twice
    assert st["state"][1] == ms.RUNNING


def test_classify_codes_strings_and_config_map() -> None:
    codes = ms.DEFAULT_STATE_MAP
    assert ms.classify(1, codes) == (ms.RUNNING, "")
    assert ms.classify(4.0, codes) == (ms.UNPLANNED_STOP, "4")
    assert ms.classify(9, codes) == (ms.UNPLANNED_STOP, "unmapped:9")
    assert ms.classify(True, codes) == (ms.RUNNING, "")
    assert ms.classify("UNPL", codes) == (ms.UNPLANNED_STOP, "UNPL")
    assert ms.classify(None, codes) is None and ms.classify(1.5, codes) is None
    asset = Asset(
        path="a.b.c.d.e",
        state_codes=[StateCode(code=10, state="RUNNING"), StateCode(code=20, state="UNPLANNED_STOP", reason="jam")],
    )
    assert ms.classify(20, ms.state_map(asset)) == (ms.UNPLANNED_STOP, "jam")


def test_night_shift_crosses_midnight() -> None:
    cal = ms.calendar(
        [Shift(name="night", start=time(22), end=time(6), breaks=[ShiftBreak(start=time(2), end=time(2, 30))])]
    )
    occ = ms.occurrence_at(cal, T0 + at(23) * S)
    assert occ is not None and occ.start == T0 + at(22) * S and occ.end == T0 + (at(6) + 86400) * S
    assert occ.breaks == ((T0 + (at(2) + 86400) * S, T0 + (at(2, 30) + 86400) * S),)
    # only on the configured days: 2026-01-01 is a Thursday
    assert (
        ms.occurrence_at(ms.calendar([Shift(name="x", start=time(6), end=time(14), days=["fri"])]), T0 + at(7) * S)
        is None
    )


def test_profile_from_the_demo_plant(clean_env: None) -> None:
    s: Settings = load_config()
    press = oee.profile_for(s, "demo.springfield.stamping.line1.press1")
    assert press is not None and press.state_tags == {"state"} and press.counters == {"strokes_total": ("total", U32)}
    packer = oee.profile_for(s, "demo.springfield.packaging.line3.packer1")
    assert packer is not None and packer.roles == {"good", "scrap"}
    assert oee.profile_for(s, "demo.springfield.utilities.water.pump1") is None  # no machine_state tag


def test_shift_in_local_time_over_a_dst_change() -> None:
    # Europe/Berlin springs forward on 2026-03-29 at 02:00 CET: a 00:00-06:00 shift lasts 5 h that day
    cal = ms.calendar([Shift(name="n", start=time(0), end=time(6), timezone="Europe/Berlin")])
    start = int(datetime(2026, 3, 28, 23, tzinfo=UTC).timestamp()) * S  # 00:00 CET = 23:00 UTC
    occ = ms.occurrence_at(cal, start + S)
    assert occ is not None and occ.start == start and occ.end - occ.start == 5 * 3600 * S


def test_late_samples_never_reopen_an_emitted_window_or_shift() -> None:
    shifts = [Shift(name="a", start=time(0), end=time(0, 1, 30)), Shift(name="b", start=time(0, 1, 30), end=time(6))]
    p = profile({"total": "total"}, shifts=shifts)
    st = oee.new_state()
    out: list[dict] = []
    for f in [frame(0, total=0), frame(50, total=3), frame(100, total=5)]:  # counters only, no state yet
        out += oee.apply_frame(st, f, p, 60 * S, 0)
    # watermark 100: [0, 60) and shift a (0-90 s) closed, each with the 3 parts counted at 50 s
    assert {(r["shift"], r["window_start"], r["produced_quantity"]) for r in out} == {("", T0, 3), ("a", T0, 3)}
    late = oee.apply_frame(st, frame(80, state=1, total=7), p, 60 * S, 0)
    # the state sample lies before the watermark: late; the counter's +2 goes to the open window
    # [60, 120), but not to the emitted shift a
    assert late == [] and st["state"] is None and st["late"] == 1
    out = oee.apply_frame(st, frame(125, state=1), p, 60 * S, 0)
    # [60, 120): +2 at 100 s, +2 at 80 s
    assert [(r["shift"], r["window_start"], r["produced_quantity"]) for r in out] == [("", T0 + 60 * S, 4)]
