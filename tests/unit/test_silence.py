"""Silence is not running (issue 17, item 5) and corrections after delayed data (item 3), in the pure math.

- Beyond an asset's allowed silence (its expected reporting interval and slack) there is no data: OEE
  counts the time in no class, no window is made for the gap, and every window says its coverage.
- Within it (report by exception: an unchanged state is not resent) the last state holds, as before.
- A silence closed by the idle timer whose data then arrives (store and forward) is rolled back: the
  newest revision of every window equals the computation from all the data.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from plantstream.core import reporting
from plantstream.core.config import Settings
from processors import event_windows, oee

S = 1_000_000
T0 = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp()) * S
SIZE = 60 * S
GRACE = 5 * S
ASSET = "a.b.c.d.e"


def profile(silence_s: float | None = 10.0) -> oee.AssetProfile:
    return oee.AssetProfile(
        asset=ASSET,
        state_tags=frozenset({"state"}),
        counters={"total": ("total", 2**32)},
        ideal_cycle_time_s=1.0,
        silence_us=None if silence_s is None else int(silence_s * S),
    )


def frame(t_s: float, **values: Any) -> dict:
    t = T0 + int(t_s * S)
    samples = [
        {"tag": k, "source_time": t, "value": v, "quality": "GOOD" if v is not None else "BAD", "unit": ""}
        for k, v in values.items()
    ]
    return {"asset": ASSET, "scan_time": t, "samples": samples}


def run_oee(p: oee.AssetProfile, frames: list[dict]) -> list[dict]:
    st = oee.new_state()
    out: list[dict] = []
    for f in frames:
        out += oee.apply_frame(st, f, p, SIZE, GRACE)
        st = json.loads(json.dumps(st))  # as the changelog keeps it
    return out


def test_a_restart_after_100_minutes_makes_no_windows_for_the_gap() -> None:
    # the case: the press ran, plantstream was off for 100 minutes, then everything came back
    frames = [frame(t, state=1, total=t // 2) for t in range(0, 150)]
    frames += [frame(150 + 6000 + t, state=1, total=75 + t // 2) for t in range(0, 130)]
    out = [r for r in run_oee(profile(), frames) if not r["shift"]]
    starts = sorted((r["window_start"] - T0) // S for r in out)
    # [0, 60), [60, 120), [120, 180) before; [6120, 6180), [6180, 6240) after: nothing in between
    assert starts == [0, 60, 120, 6120, 6180]
    by = {(r["window_start"] - T0) // S: r for r in out}
    # [120, 180): reports 120-149 s, then 10 s of allowed silence after the last one: 120-159 s known
    assert by[120]["actual_production_time_s"] == pytest.approx(39.0)
    assert by[120]["planned_busy_time_s"] == pytest.approx(39.0)
    assert by[120]["data_coverage"] == pytest.approx(39 / 60)
    assert by[60]["data_coverage"] == 1.0 and by[60]["availability"] == 1.0
    # [6120, 6180): data from 6150 s on
    assert by[6120]["data_coverage"] == pytest.approx(30 / 60)
    assert by[6120]["availability"] == 1.0


def test_the_same_gap_without_a_limit_is_the_old_last_state_holds() -> None:
    frames = [frame(0, state=1, total=0), frame(1000, state=1, total=0)]
    out = [r for r in run_oee(profile(None), frames) if not r["shift"]]
    assert len(out) == 16 and all(r["availability"] == 1.0 for r in out)  # 1000 s held as RUNNING


def test_report_by_exception_silence_within_the_heartbeat_keeps_the_last_state() -> None:
    # an RBE device sends the state only when it changes, and a heartbeat every 30 s: its allowed
    # silence is 5 heartbeats (150 s), so 100 s without a frame is still RUNNING
    p = profile(150)
    out = [r for r in run_oee(p, [frame(0, state=1), frame(100, total=3), frame(200, state=2)]) if not r["shift"]]
    by = {(r["window_start"] - T0) // S: r for r in out}
    assert by[0]["actual_production_time_s"] == 60 and by[60]["actual_production_time_s"] == 60
    assert by[0]["data_coverage"] == 1.0 and by[60]["data_coverage"] == 1.0


def test_only_bad_samples_are_no_data_after_the_allowed_silence() -> None:
    # the device stopped answering: the producer keeps sending frames, every sample BAD
    frames = [frame(t, state=1) for t in range(0, 30)] + [frame(t, state=None) for t in range(30, 200)]
    out = [r for r in run_oee(profile(), frames) if not r["shift"]]
    by = {(r["window_start"] - T0) // S: r for r in out}
    assert by[0]["actual_production_time_s"] == pytest.approx(39.0)  # 0-29 s reports, held to 39 s
    assert by[0]["data_coverage"] == pytest.approx(39 / 60)
    assert 60 not in by and 120 not in by  # no state known: no window


def test_silence_and_an_unclassified_stop() -> None:
    p = oee.AssetProfile(
        asset=ASSET, state_tags=frozenset({"state"}), counters={}, micro_stop_us=60 * S, silence_us=10 * S
    )
    frames = [frame(t, state=1) for t in range(0, 20)] + [frame(20, state=4)] + [frame(300, state=1)]
    out = [r for r in run_oee(p, frames) if not r["shift"]]
    r = next(r for r in out if r["window_start"] == T0)
    # the stop began at 20 s; the data ended at 30 s: a 10 s stop, under the 60 s threshold: a micro-stop
    assert r["failures"] == 0 and r["actual_production_time_s"] == pytest.approx(30.0)
    assert r["data_coverage"] == pytest.approx(0.5)


def test_kpi_windows_say_how_much_of_them_had_data() -> None:
    st = event_windows.new_state()
    out: list[dict] = []
    for t in [*range(0, 25), *range(100, 130)]:
        out += event_windows.apply_frame(st, frame(t, x=1.0), SIZE, GRACE, silence=10 * S)
    out += event_windows.advance_idle(st, ASSET, SIZE, GRACE, 600 * S, silence=10 * S)
    cov = {(r["window_start"] - T0) // S: r["data_coverage"] for r in out}
    # reports 0-24 s cover 0-34 s; 100-129 s cover 100-139 s
    assert cov == {0: pytest.approx(34 / 60), 60: pytest.approx(20 / 60), 120: pytest.approx(19 / 60)}


def test_an_rbe_silence_within_the_limit_is_covered() -> None:
    st = event_windows.new_state()
    out: list[dict] = []
    for t in (0, 50, 100, 200):
        out += event_windows.apply_frame(st, frame(t, x=1.0), SIZE, GRACE, silence=150 * S)
    assert [r["data_coverage"] for r in out] == [1.0, 1.0]


def test_expected_interval_from_the_devices(clean_env: None) -> None:
    from plantstream.core.config import DEMO_CONFIG, load_config

    s: Settings = load_config(DEMO_CONFIG)
    assert reporting.expected_interval_s(s, "demo.springfield.stamping.line1.press1") == 1.0
    assert reporting.expected_interval_s(s, "demo.springfield.utilities.water.pump1") == 0.5
    assert reporting.silence_us(s, "demo.springfield.utilities.water.pump1") == 10 * S  # at least 10 s
    raw = s.model_dump(mode="json")
    for tag in raw["devices"][0]["tags"]:
        tag["deadband_abs"], tag["heartbeat_s"] = 0.5, 30
    raw["plant"]["assets"][1]["report_interval_s"] = 20
    s2 = Settings(**raw)
    assert reporting.expected_interval_s(s2, "demo.springfield.stamping.line1.press1") == 30
    assert reporting.silence_us(s2, "demo.springfield.stamping.line1.press1") == 150 * S
    assert reporting.silence_us(s2, "demo.springfield.machining.line2.cnc1") == 100 * S
    for tag in raw["devices"][0]["tags"]:
        tag["heartbeat_s"] = None  # every tag behind a deadband, none with a heartbeat: no promise
    assert reporting.silence_us(Settings(**raw), "demo.springfield.stamping.line1.press1") is None


# --- corrections: a producer cut off from Kafka, then back with its store-and-forward buffer ----------


def plant_frames(seed: int, n: int) -> list[dict]:
    rng = random.Random(seed)
    frames, state, total = [], 1, 0
    for i in range(n):
        if rng.random() < 0.05:
            state = rng.choice([1, 1, 2, 4])
        total += 1 if state == 1 and rng.random() < 0.6 else 0
        frames.append(frame(i, state=state, total=total, x=rng.gauss(50, 5)))
    return frames


def newest(records: list[dict], key: tuple[str, ...]) -> dict[tuple, dict]:
    out: dict[tuple, dict] = {}
    for r in records:
        k = tuple(r[f] for f in key)
        if k not in out or r["revision"] > out[k]["revision"]:
            out[k] = r
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_windows_closed_by_a_silence_are_corrected_when_the_buffer_arrives(seed: int) -> None:
    frames = plant_frames(seed, 600)
    cut = 200  # the producer is cut off after frame 200; its buffer arrives later, in order
    p = profile()

    # reference: every frame in order, no silence at all
    ref_st, ref_kpi, ref_oee = event_windows.new_state(), [], []
    ref_o = oee.new_state()
    for f in frames:
        ref_kpi += event_windows.apply_frame(ref_st, f, SIZE, GRACE, silence=10 * S)
        ref_oee += oee.apply_frame(ref_o, f, p, SIZE, GRACE)

    st, o = event_windows.new_state(), oee.new_state()
    kpi: list[dict] = []
    oees: list[dict] = []
    late: list[dict] = []
    for f in frames[:cut]:
        kpi += event_windows.apply_frame(st, f, SIZE, GRACE, silence=10 * S)
        oees += oee.apply_frame(o, f, p, SIZE, GRACE)
    # the worker sees the asset silent: the idle timer closes its windows, several ticks
    for idle_s in (61, 62, 120, 400):
        kpi += event_windows.advance_idle(st, ASSET, SIZE, GRACE, idle_s * S, silence=10 * S)
        oees += oee.advance_idle(o, p, SIZE, GRACE, idle_s * S)
        st, o = json.loads(json.dumps(st)), json.loads(json.dumps(o))  # a restart in between changes nothing
    assert st["snap"] is not None and o["snap"] is not None, "the idle timer closed windows: the test means something"
    for f in frames[cut:]:
        kpi += event_windows.apply_frame(st, f, SIZE, GRACE, late=late, silence=10 * S, allowed_lateness=86400 * S)
        oees += oee.apply_frame(o, f, p, SIZE, GRACE, 86400 * S)
    assert late == []
    assert any(r["revision"] > 0 for r in kpi) and any(r["revision"] > 0 for r in oees)
    got_kpi = newest(kpi, ("tag", "window_start"))
    want_kpi = {(r["tag"], r["window_start"]): r for r in ref_kpi}
    assert set(got_kpi) == set(want_kpi)
    for k, r in want_kpi.items():
        assert {**got_kpi[k], "revision": 0} == pytest.approx(r), k
    got_oee = newest(oees, ("shift", "window_start"))
    want_oee = {(r["shift"], r["window_start"]): r for r in ref_oee}
    assert set(got_oee) == set(want_oee)
    for k, r in want_oee.items():
        g = {**got_oee[k], "revision": 0}
        assert g.pop("downtime_by_reason_s") == pytest.approx(r.pop("downtime_by_reason_s")), k
        assert g == pytest.approx(r), k


def test_data_later_than_the_allowed_lateness_goes_to_the_late_topic() -> None:
    st = event_windows.new_state()
    for t in range(0, 30):
        event_windows.apply_frame(st, frame(t, x=1.0), SIZE, GRACE)
    assert event_windows.advance_idle(st, ASSET, SIZE, GRACE, 100 * S)  # [0, 60) closed by the silence
    late: list[dict] = []
    # 30 s after the window: within 60 s of the watermark (124 s)? 124 - 40 = 84 > 60: too late
    out = event_windows.apply_frame(st, frame(40, x=2.0), SIZE, GRACE, late=late, allowed_lateness=60 * S)
    assert out == [] and len(late) == 1


@pytest.mark.parametrize("tick_s", [1.0, 1.37])
def test_idle_ticks_of_any_length_close_what_one_long_silence_closes(tick_s: float) -> None:
    # a stop still being timed when the data ends: the allowed silence ends it, and every window holding
    # known time closes, however the idle timer's ticks fall (a tick past the end of the data once left
    # the last window open for good)
    p = oee.AssetProfile(
        asset=ASSET, state_tags=frozenset({"state"}), counters={}, micro_stop_us=10 * S, silence_us=10 * S
    )
    frames = [frame(t, state=1) for t in range(0, 89)] + [frame(89, state=4)]
    size, grace = 5 * S, 1 * S

    def fed() -> dict:
        st = oee.new_state()
        for f in frames:
            oee.apply_frame(st, f, p, size, grace)
        return st

    once = oee.advance_idle(fed(), p, size, grace, 10**12)
    st, stepped, idle = fed(), [], 5.0
    while idle < 40:
        stepped += oee.advance_idle(st, p, size, grace, int(idle * S))
        idle += tick_s
    assert [r["window_start"] for r in stepped] == [r["window_start"] for r in once]
    assert (once[-1]["window_start"] - T0) // S == 95 and once[-1]["failures"] == 0


def test_the_copy_before_a_silence_goes_once_the_silence_outlasts_the_allowed_lateness() -> None:
    st, o = event_windows.new_state(), oee.new_state()
    p = profile()
    for t in range(0, 30):
        event_windows.apply_frame(st, frame(t, x=1.0, state=1), SIZE, GRACE)
        oee.apply_frame(o, frame(t, state=1), p, SIZE, GRACE)
    event_windows.advance_idle(st, ASSET, SIZE, GRACE, 100 * S, allowed_lateness=3600 * S)
    oee.advance_idle(o, p, SIZE, GRACE, 100 * S, 3600 * S)
    assert st["snap"] is not None and o["snap"] is not None
    event_windows.advance_idle(st, ASSET, SIZE, GRACE, 3601 * S, allowed_lateness=3600 * S)
    oee.advance_idle(o, p, SIZE, GRACE, 3601 * S, 3600 * S)
    assert st["snap"] is None and o["snap"] is None and st["revs"] == {} and o["revs"] == {}
