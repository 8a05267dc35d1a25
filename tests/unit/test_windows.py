"""Per-tag statistics and event-time windows: checked against numpy and hand-computed cases."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from processors import event_windows, tag_stats

S = 1_000_000  # µs per second


def stats_of(points: list[tuple[int, float]]) -> dict:
    acc = tag_stats.new_acc("bar")
    for t, v in points:
        tag_stats.add(acc, t, v, True)
    return tag_stats.result(acc)


def test_statistics_match_numpy() -> None:
    rng = random.Random(3)
    points = [(i * S, rng.gauss(1e6, 0.01)) for i in range(500)]  # large offset: naive variance fails here
    r = stats_of(points)
    values = np.array([v for _, v in points])
    assert r["count"] == 500
    assert r["mean"] == pytest.approx(values.mean(), rel=1e-12)
    assert r["stddev"] == pytest.approx(values.std(), rel=1e-6)
    assert (r["min"], r["max"]) == (values.min(), values.max())
    assert (r["first"], r["last"]) == (points[0][1], points[-1][1])


def test_time_weighted_average_holds_each_value() -> None:
    # 10 for 1 s, then 20 for 3 s, then 0 at the end: TWA = (10*1 + 20*3) / 4 = 17.5
    r = stats_of([(0, 10.0), (1 * S, 20.0), (4 * S, 0.0)])
    assert r["time_weighted_avg"] == pytest.approx(17.5)
    assert r["mean"] == pytest.approx(10.0)
    assert r["rate_of_change"] == pytest.approx(-10 / 4)


def test_single_sample_and_bad_samples() -> None:
    acc = tag_stats.new_acc()
    tag_stats.add(acc, 5, 3.0, True)
    tag_stats.add(acc, 6, None, False)
    tag_stats.add(acc, 7, 99.0, False)  # a BAD sample never enters the statistics
    tag_stats.add(acc, 8, "text", True)  # nor does a non-numeric value
    r = tag_stats.result(acc)
    assert r["count"] == 1 and r["bad_count"] == 3
    assert r["time_weighted_avg"] == 3.0 and r["rate_of_change"] is None and r["stddev"] == 0.0


def test_booleans_count_as_duty_cycle() -> None:
    assert stats_of([(0, True), (S, False), (2 * S, True), (3 * S, True)])["mean"] == 0.75


def test_non_finite_values_are_not_statistics() -> None:
    acc = tag_stats.new_acc()
    tag_stats.add(acc, 0, math.nan, True)
    tag_stats.add(acc, 1, math.inf, True)
    assert tag_stats.result(acc)["count"] == 0


def frame(asset: str, t: int, **values: float) -> dict:
    return {
        "asset": asset,
        "scan_time": t,
        "samples": [{"tag": k, "source_time": t, "value": v, "quality": "GOOD", "unit": ""} for k, v in values.items()],
    }


def test_window_closes_once_after_grace() -> None:
    st = event_windows.new_state()
    size, grace = 10 * S, 2 * S
    assert event_windows.apply_frame(st, frame("a", 1 * S, x=1.0), size, grace) == []
    assert event_windows.apply_frame(st, frame("a", 9 * S, x=3.0), size, grace) == []
    # t=11 s: watermark 9 s < 10 s, window [0,10) still open within grace
    assert event_windows.apply_frame(st, frame("a", 11 * S, x=5.0), size, grace) == []
    closed = event_windows.apply_frame(st, frame("a", 12 * S, x=7.0), size, grace)
    assert [(r["tag"], r["window_start"], r["window_end"], r["count"], r["mean"]) for r in closed] == [
        ("x", 0, 10 * S, 2, 2.0)
    ]
    assert event_windows.apply_frame(st, frame("a", 13 * S, x=7.0), size, grace) == []  # never twice


def test_late_sample_within_grace_counts_and_beyond_grace_is_counted_late() -> None:
    st = event_windows.new_state()
    size, grace = 10 * S, 2 * S
    event_windows.apply_frame(st, frame("a", 5 * S, x=1.0), size, grace)
    event_windows.apply_frame(st, frame("a", 11 * S, x=1.0), size, grace)
    # 9 s is late but within grace: it still lands in [0, 10)
    event_windows.apply_frame(
        st,
        {
            "asset": "a",
            "scan_time": 11 * S,
            "samples": [{"tag": "x", "source_time": 9 * S, "value": 4.0, "quality": "GOOD", "unit": ""}],
        },
        size,
        grace,
    )
    closed = event_windows.apply_frame(st, frame("a", 25 * S, x=1.0), size, grace)
    assert closed[0]["count"] == 2 and closed[0]["max"] == 4.0
    event_windows.apply_frame(
        st,
        {
            "asset": "a",
            "scan_time": 25 * S,
            "samples": [{"tag": "x", "source_time": 3 * S, "value": 4.0, "quality": "GOOD", "unit": ""}],
        },
        size,
        grace,
    )
    assert st["late"] == 1


def test_replay_in_other_batches_gives_the_same_windows() -> None:
    rng = random.Random(1)
    frames = [frame("a", i * S // 2, x=rng.random(), y=rng.random() * 100) for i in range(400)]

    def run(fs: list[dict]) -> list[dict]:
        st = event_windows.new_state()
        out = []
        for f in fs:
            out += event_windows.apply_frame(st, f, 15 * S, 1 * S)
        return out

    first = run(frames)
    assert len(first) == 2 * 13  # 200 s of data: 13 closed 15-s windows x 2 tags
    assert run(frames) == first


def test_hopping_windows_equal_a_direct_computation_over_each_window() -> None:
    rng = random.Random(7)
    points = [(i * S // 4 + rng.randrange(S // 8), rng.gauss(50, 5)) for i in range(480)]  # 120 s, 4 Hz
    size, hop = 30 * S, 10 * S
    st = event_windows.new_state()
    out: list[dict] = []
    for t, v in points:
        out += event_windows.apply_frame(st, frame("a", t, x=v), size, 2 * S, hop)
    out += event_windows.advance_idle(st, "a", size, 2 * S, idle_us=10**9, hop=hop)  # flush the tail
    starts = [r["window_start"] for r in out]
    assert starts == sorted(set(starts)), "each window exactly once, in order"
    # every window that overlaps the data: starts from -20 s to 110 s in steps of 10 s
    assert starts == list(range(-20 * S, 120 * S, 10 * S))
    for r in out:
        inside = [(t, v) for t, v in points if r["window_start"] <= t < r["window_end"]]
        direct = stats_of(inside)
        assert r["count"] == direct["count"] == len(inside)
        for k in ("min", "max", "first", "last", "first_time", "last_time"):
            assert r[k] == direct[k], k
        for k in ("mean", "stddev", "time_weighted_avg", "rate_of_change"):
            assert r[k] == pytest.approx(direct[k], rel=1e-9), k


def test_hopping_equals_tumbling_when_hop_is_the_size() -> None:
    rng = random.Random(2)
    frames = [frame("a", i * S // 2, x=rng.random()) for i in range(300)]
    a, b = event_windows.new_state(), event_windows.new_state()
    ra = [r for f in frames for r in event_windows.apply_frame(a, f, 10 * S, S)]
    rb = [r for f in frames for r in event_windows.apply_frame(b, f, 10 * S, S, 10 * S)]
    assert ra == rb and len(ra) == 14


def test_late_samples_are_handed_back_and_enter_no_window() -> None:
    st = event_windows.new_state()
    size, grace, hop = 20 * S, 0, 10 * S
    late: list[dict] = []
    for t in range(0, 50 * S, S):
        event_windows.apply_frame(st, frame("a", t, x=1.0), size, grace, hop, late)
    assert late == []
    # 25 s: its first window [10, 30) was emitted when the watermark passed 30 s
    straggler = {
        "asset": "a",
        "scan_time": 49 * S,
        "samples": [{"tag": "x", "source_time": 25 * S, "value": 99.0, "quality": "GOOD", "unit": ""}],
    }
    out = event_windows.apply_frame(st, straggler, size, grace, hop, late)
    assert [s["source_time"] for s in late] == [25 * S] and st["late"] == 1
    out += event_windows.advance_idle(st, "a", size, grace, idle_us=100 * S, hop=hop)
    assert all(r["max"] == 1.0 for r in out), "a late sample must not reach a later window either"


def test_idle_asset_closes_its_last_window_only_after_the_grace() -> None:
    st = event_windows.new_state()
    size, grace = 10 * S, 2 * S
    for t in range(0, 15 * S, S):
        event_windows.apply_frame(st, frame("a", t, x=2.0), size, grace)
    assert event_windows.advance_idle(st, "a", size, grace, idle_us=grace) == []  # not idle long enough
    assert event_windows.advance_idle(st, "a", size, grace, idle_us=5 * S) == []  # wm 17 s < 20 s
    closed = event_windows.advance_idle(st, "a", size, grace, idle_us=8 * S)  # wm 20 s: [10, 20) closes
    assert [(r["window_start"], r["count"]) for r in closed] == [(10 * S, 5)]
    assert event_windows.advance_idle(st, "a", size, grace, idle_us=60 * S) == []  # never twice
    # the asset comes back with data from inside the closed window (delayed, not missing): the state
    # rolls back to before the silence, and the window is emitted again, corrected, as revision 1
    late: list[dict] = []
    assert event_windows.apply_frame(st, frame("a", 19 * S, x=3.0), size, grace, late=late) == []
    assert late == []
    again = event_windows.apply_frame(st, frame("a", 22 * S, x=3.0), size, grace)
    assert [(r["window_start"], r["count"], r["revision"]) for r in again] == [(10 * S, 6, 1)]
    # without a silence to roll back, a sample for an emitted window is late, as before
    event_windows.apply_frame(st, frame("a", 19 * S + 1, x=3.0), size, grace, late=late)
    assert len(late) == 1


def test_merge_of_panes_equals_sequential_accumulation() -> None:
    rng = random.Random(5)
    points = [(i * S, rng.gauss(1e6, 3.0)) for i in range(200)]
    whole = tag_stats.new_acc()
    a, b = tag_stats.new_acc(), tag_stats.new_acc()
    for t, v in points:
        tag_stats.add(whole, t, v, True)
        tag_stats.add(a if t < 120 * S else b, t, v, True)
    merged, direct = tag_stats.result(tag_stats.merge(a, b)), tag_stats.result(whole)
    for k, v in direct.items():
        assert merged[k] == (pytest.approx(v, rel=1e-9) if isinstance(v, float) else v), k
    assert tag_stats.merge(tag_stats.new_acc(), a) == {**a, "bad": 0}
