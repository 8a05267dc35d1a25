"""The pure pieces of the multivariate anomaly model, and the detectors they make up."""

from __future__ import annotations

import json

import numpy as np
import pytest

from plantstream.core.config import Settings
from processors.anomaly.estimators import Debounce, DecayedQuantile, cross_coefficients
from processors.anomaly.model import AnomalyStage, MultivariateModel
from tests.unit.test_anomaly import CFG, TAGS, correlated, first_alarm, frame, run


def test_decayed_quantile_tracks_a_quantile_and_forgets() -> None:
    rng = np.random.default_rng(0)
    dq = DecayedQuantile(0.99, window=2000)
    for v in rng.exponential(1.0, 5000):
        dq.update(float(v))
    # exponential(1): q99 = ln(100) = 4.6; bins are ~6 % wide
    assert dq.get() == pytest.approx(np.log(100), rel=0.1)
    for v in rng.exponential(10.0, 8000):  # the process changed: the old values fade out
        dq.update(float(v))
    assert dq.get() == pytest.approx(10 * np.log(100), rel=0.1)
    clone = DecayedQuantile.from_state(json.loads(json.dumps(dq.to_state())))
    clone.update(3.0)
    dq.update(3.0)
    assert clone.get() == dq.get()
    assert DecayedQuantile(0.5, 10).get() is None
    with pytest.raises(ValueError, match="0 < q < 1"):
        DecayedQuantile(1.5, 10)


def test_cross_coefficients_predict_each_signal_from_the_others_only() -> None:
    rng = np.random.default_rng(1)
    load = rng.normal(size=4000)
    a = load + 0.05 * rng.normal(size=4000)
    b = 2 * load + 0.05 * rng.normal(size=4000)
    a2 = a * a  # a feature derived from a (owner 0)
    data = np.column_stack([a, b, a2])
    corr = np.corrcoef(data, rowvar=False)
    coef = cross_coefficients(corr, np.array([0, 1, 0]), p=2, ridge=1e-6)
    assert coef[0, 0] == 0 and coef[0, 2] == 0  # a's own features never predict a
    assert coef[1, 1] == 0
    assert coef[0, 1] == pytest.approx(1.0, abs=0.02)  # standardised: a ~ b
    assert coef[1, 0] == pytest.approx(1.0, abs=0.02)
    with pytest.raises(ValueError, match="do not fit"):
        cross_coefficients(corr, np.array([0, 1]), p=2, ridge=0.0)


def test_debounce_weighs_evidence_by_how_far_above_and_clears_with_hysteresis() -> None:
    # bar: 3 frames at twice the threshold (3 ln 2); one frame adds at most 0.34 of it
    far = Debounce(k=3, clear=2, hysteresis=0.5)
    assert [far.step(s, 1.0) for s in (1000.0, 1000.0, 1000.0)] == [False, False, True]  # no wild frame alone
    near = Debounce(k=3, clear=2, hysteresis=0.5)
    raised = [near.step(1.1, 1.0) for _ in range(30)]  # ln 1.1 = 0.095 a frame: 22 frames to reach 2.08
    assert raised.index(True) == 21 and all(raised[21:])
    d = Debounce(k=3, clear=2, hysteresis=0.5)
    assert [d.step(s, 1.0) for s in (2.5, 2.5, 0.2, 2.5, 2.5)] == [False] * 5  # the dip spent the evidence
    assert d.step(2.5, 1.0)
    assert [d.step(s, 1.0) for s in (0.4, 0.8, 0.4, 0.4)] == [True, True, True, False]  # 2 in a row under 0.5
    assert [d.step(2.5, 1.0) for _ in range(3)] == [False, False, True]
    st = json.loads(json.dumps(d.to_state()))
    e = Debounce(k=3, clear=2, hysteresis=0.5)
    e.load(st)
    assert e.to_state() == d.to_state()
    d.rearm()  # a new incident: the alarm ends and needs fresh evidence
    assert [d.step(2.5, 1.0) for _ in range(3)] == [False, False, True]
    with pytest.raises(ValueError, match="hysteresis"):
        Debounce(k=0, clear=2, hysteresis=0.5)


def test_noise_burst_on_one_sensor_is_detected_and_named() -> None:
    rows = correlated(1500, seed=7)
    rng = np.random.default_rng(8)
    rows[1100:1300, 1] += rng.normal(0, 0.6, 200)  # b gets noisy, its level and relations unchanged
    recs = run(MultivariateModel("m", CFG, TAGS), rows)
    at = first_alarm(recs, 300)
    assert at is not None and 1100 <= at < 1160, at
    assert max(recs[at]["contributions"].items(), key=lambda kv: kv[1])[0] == "b"


def _stateful_settings() -> Settings:
    return Settings(
        plant={"assets": [{"path": "a.b.c.d.e", "anomaly": {"model": "multivariate", "warmup_frames": 300}}]},
        devices=[
            {
                "name": "d",
                "protocol": "modbus_tcp",
                "asset": "a.b.c.d.e",
                "tags": [
                    {"name": "a", "type": "float32", "address": 0},
                    {"name": "b", "type": "float32", "address": 2},
                    {"name": "c", "type": "float32", "address": 4},
                    {"name": "state", "role": "machine_state", "type": "uint16", "address": 6},
                ],
            }
        ],
    )


def test_model_pauses_while_the_machine_is_not_running() -> None:
    stage = AnomalyStage(_stateful_settings())
    rows = correlated(900, seed=9)
    asset = "a.b.c.d.e"

    def fr(i: int, row: np.ndarray, state: int | None) -> dict:
        f = frame(i, dict(zip(TAGS, map(float, row), strict=True)))
        if state is not None:
            f["samples"].append({"tag": "state", "source_time": f["scan_time"], "value": state, "quality": "GOOD"})
        return f

    for i in range(500):
        stage.score(asset, fr(i, rows[i], 1 if i == 0 else None))  # RUNNING, then no state sample
    model = stage.models[asset]
    assert isinstance(model, MultivariateModel)
    learned = model.n
    # stopped (IDLE = 2): the signals fall to nothing, which must neither alarm nor be learned
    for i in range(500, 700):
        rec = stage.score(asset, fr(i, rows[i] * 0.01, 2 if i == 500 else None))
        assert rec is not None and not rec["is_anomaly"] and rec["score"] == 0.0
    assert model.n == learned
    recs = [stage.score(asset, fr(i, rows[i], 1 if i == 700 else None)) for i in range(700, 900)]
    assert all(r is not None and r["warming_up"] for r in recs[:5])  # settling after the restart
    assert not any(r is not None and r["is_anomaly"] for r in recs)
    assert model.n > learned
