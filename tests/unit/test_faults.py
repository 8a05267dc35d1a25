"""Labelled fault injection and simulated normal operation: reproducible, in range, and doing what they say."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from plantstream.core.config import COLLECTIVE_FAULT_KINDS, FAULT_KINDS
from plantstream.simulators.faults import (
    PUMP_TAGS,
    Fault,
    FaultInjector,
    NormalOperation,
    apply_faults,
    faulty_series,
    make_schedule,
)

ASSETS = ["p.s.a.l.pump1", "p.s.a.l.pump2"]


def test_schedule_is_reproducible_ordered_and_after_warm_up() -> None:
    a = make_schedule(5, ASSETS, 8)
    assert a == make_schedule(5, ASSETS, 8)
    assert a != make_schedule(6, ASSETS, 8)
    assert a and all(f.kind in FAULT_KINDS for f in a)
    for asset in ASSETS:
        mine = [f for f in a if f.asset == asset]
        assert mine[0].start_s >= 1800
        assert all(f.end_s <= 8 * 3600 for f in mine)
        assert all(x.end_s < y.start_s for x, y in itertools.pairwise(mine))  # no overlaps per asset
    with pytest.raises(ValueError, match="unknown fault kind"):
        make_schedule(1, ASSETS, 1, kinds=["meteor"])


def test_normal_operation_has_the_expected_scales_and_correlations() -> None:
    t, d = NormalOperation(3, 0).generate(7200)
    assert len(t) == 7200 and set(d) == set(PUMP_TAGS)
    assert 50 < np.median(d["flow"]) < 130
    assert 1.5 < np.median(d["discharge_pressure"]) < 5.5
    assert 10 < np.median(d["motor_current"]) < 40
    assert 0.5 < np.median(d["vibration_rms"]) < 3
    assert 30 < np.median(d["bearing_temperature"]) < 60
    # one load drives flow, pressure and current
    assert np.corrcoef(d["flow"], d["discharge_pressure"])[0, 1] > 0.9
    assert np.corrcoef(d["flow"], d["motor_current"])[0, 1] > 0.9
    _, d2 = NormalOperation(3, 0).generate(7200)
    assert all(np.array_equal(d[k], d2[k]) for k in d)


def test_single_sensor_faults() -> None:
    base = {"flow": 100.0, "discharge_pressure": 4.0}
    drift = Fault("x", "drift", 0, 100, ("flow",), sign=-1.0)
    assert apply_faults(base, 0, "x", [drift])["flow"] == pytest.approx(100.0)
    assert apply_faults(base, 99.9, "x", [drift])["flow"] < 95
    assert apply_faults(base, 150, "x", [drift]) == base  # over
    spike = Fault("x", "spike", 10, 20, ("discharge_pressure",))
    assert apply_faults(base, 15, "x", [spike])["discharge_pressure"] == pytest.approx(5.0)
    assert apply_faults(base, 15, "other", [spike]) == base  # another asset
    stuck = Fault("x", "stuck", 0, 100, ("flow",))
    inj = FaultInjector([stuck])
    assert inj.apply("x", 1, {"flow": 90.0})["flow"] == 90.0
    assert inj.apply("x", 2, {"flow": 97.0})["flow"] == 90.0
    burst = Fault("x", "noise_burst", 0, 100, ("flow",))
    noisy = [FaultInjector([burst], seed=1).apply("x", float(i), base)["flow"] for i in range(100)]
    assert np.std(noisy) > 2
    assert noisy == [FaultInjector([burst], seed=1).apply("x", float(i), base)["flow"] for i in range(100)]


def test_collective_faults_move_several_signals_the_right_way() -> None:
    base = {
        "flow": 100.0,
        "discharge_pressure": 4.0,
        "motor_current": 30.0,
        "vibration_rms": 2.0,
        "bearing_temperature": 50.0,
    }
    bw = apply_faults(base, 99, "x", [Fault("x", "bearing_wear", 0, 100, ("vibration_rms",))])
    assert bw["vibration_rms"] > 2.3 and bw["bearing_temperature"] > 52 and bw["motor_current"] > 30.5
    assert bw["flow"] == 100.0
    cf = apply_faults(base, 99, "x", [Fault("x", "clogged_filter", 0, 100, ("flow",))])
    assert cf["discharge_pressure"] > 4.2 and cf["flow"] < 95
    cav = [apply_faults(base, float(i), "x", [Fault("x", "cavitation", 0, 100, ("flow",))]) for i in range(14)]
    assert all(c["flow"] < 95 for c in cav)
    assert np.ptp([c["discharge_pressure"] for c in cav]) > 0.3  # oscillates
    assert set(COLLECTIVE_FAULT_KINDS) <= set(FAULT_KINDS)


def test_faulty_series_applies_the_ground_truth() -> None:
    t, data, truth = faulty_series(4, ASSETS[:1], 2)
    _, clean = NormalOperation(4, 0).generate(2 * 3600)
    changed = np.zeros(len(t), bool)
    for k in PUMP_TAGS:
        changed |= data[ASSETS[0]][k] != clean[k]
    inside = np.zeros(len(t), bool)
    for f in truth:
        inside |= (t >= f.start_s) & (t < f.end_s)
    assert truth and changed.any()
    assert not (changed & ~inside).any()  # nothing outside a labelled interval is touched
