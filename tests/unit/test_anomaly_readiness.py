"""Readiness: warm-up by minutes of data or frames (whichever first), a ready log line and status, and training
from a normal history so a model judges from the first live frame."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from plantstream.core.config import AnomalySettings
from processors.anomaly.model import AnomalyStage, MultivariateModel

S = 1_000_000
TAGS = ("a", "b", "c")


def frames(rows: np.ndarray, dt_s: float, t0: int = 0) -> list[dict]:
    return [
        {
            "asset": "m",
            "scan_time": t0 + int(i * dt_s * S),
            "samples": [{"tag": t, "value": float(v), "quality": "GOOD"} for t, v in zip(TAGS, row, strict=True)],
        }
        for i, row in enumerate(rows)
    ]


def correlated(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    i = np.arange(n)
    load = np.sin(2 * np.pi * i / 97) + 0.7 * np.sin(2 * np.pi * i / 151) + rng.normal(0, 0.3, n)
    return np.column_stack([10 + 2 * load, 5 + load, -3 + 0.5 * load]) + rng.normal(0, 0.1, (n, 3))


def first_ready(recs: list[dict | None]) -> int:
    return next(i for i, r in enumerate(recs) if r is not None and not r["warming_up"])


@pytest.mark.parametrize(("dt_s", "ready_at"), [(1.0, 1200), (10.0, 360), (60.0, 120), (180.0, 120)])
def test_warm_up_ends_after_an_hour_of_data_or_1200_frames(dt_s: float, ready_at: int) -> None:
    stage = AnomalyStage(overrides={"m": AnomalySettings(model="multivariate")})
    recs = [stage.score("m", f) for f in frames(correlated(1300), dt_s)]
    assert first_ready(recs) == ready_at
    assert stage.readiness_counts() == {"ready": 1, "warming_up": 0}
    state = stage.readiness()["m"]
    assert state["ready"] and state["warmup_frames"] == ready_at and state["frames"] > ready_at


def test_frames_only_when_minutes_are_off() -> None:
    cfg = AnomalySettings(model="multivariate", warmup_minutes=None, warmup_frames=300)
    stage = AnomalyStage(overrides={"m": cfg})
    assert first_ready([stage.score("m", f) for f in frames(correlated(400), 600.0)]) == 300


def test_the_model_says_when_it_is_ready(caplog: pytest.LogCaptureFixture) -> None:
    stage = AnomalyStage(overrides={"m": AnomalySettings(model="multivariate", warmup_frames=200)})
    with caplog.at_level(logging.INFO, logger="plantstream.processors.anomaly.model"):
        for f in frames(correlated(210), 1.0):
            stage.score("m", f)
    assert any("anomaly model ready after 200 frames" in r.getMessage() for r in caplog.records)
    assert stage.readiness()["m"]["ready"]


def test_training_from_history_judges_from_the_first_live_frame_and_holds_a_lasting_fault() -> None:
    cfg = AnomalySettings(model="multivariate")
    history = correlated(600, seed=1)
    state = AnomalyStage(overrides={"m": cfg}).train("m", iter(frames(history, 180.0)), len(history))
    state = json.loads(json.dumps(state, allow_nan=False))  # as the changelog carries it
    assert state["trained"] and state["warmup"] == 360  # 60 % of the history
    live = correlated(700, seed=2)
    live[300:, 1] += 1.0  # b breaks its relation to the load (10 noise sigmas) for good
    stage = AnomalyStage(overrides={"m": cfg})
    stage.restore("m", state)
    recs = [stage.score("m", f) for f in frames(live, 180.0, t0=600 * 180 * S)]
    assert not any(r is not None and r["warming_up"] for r in recs)
    flags = [r is not None and r["is_anomaly"] for r in recs]
    assert not any(flags[:300])
    onset = flags.index(True)
    assert 300 <= onset < 320
    assert all(flags[onset:])  # a trained model does not learn the fault into its relations: the alarm holds
    model = stage.models["m"]
    assert isinstance(model, MultivariateModel) and model.readiness()["trained"]


def test_training_needs_enough_history() -> None:
    with pytest.raises(ValueError, match="too few to train"):
        AnomalyStage(overrides={"m": AnomalySettings(model="multivariate")}).train(
            "m", iter(frames(correlated(100), 1.0)), 100
        )


def test_the_single_signal_baseline_plans_its_warm_up_and_median_window_by_time_too() -> None:
    stage = AnomalyStage(overrides={"m": AnomalySettings(model="robust_baseline")})
    rng = np.random.default_rng(3)
    x = 20 + rng.normal(0, 0.5, 400)
    recs = []
    for i, v in enumerate(x.tolist()):
        recs.append(stage.score("m", {"asset": "m", "scan_time": i * 300 * S, "samples": [{"tag": "t", "value": v}]}))
        if i == 200:  # a checkpoint taken here continues identically
            clone = AnomalyStage(overrides={"m": AnomalySettings(model="robust_baseline")})
            clone.restore("m", json.loads(json.dumps(stage.checkpoint("m"))))
    assert first_ready(recs) == 120  # 5-min samples: 120 frames (10 h), not 1200 (100 h)
    model = stage.models["m"]
    assert model is not None and model.readiness()["warmup_frames"] == 120 and model.window == 120  # type: ignore[union-attr]
    nxt = {"asset": "m", "scan_time": 401 * 300 * S, "samples": [{"tag": "t", "value": 20.1}]}
    later = AnomalyStage(overrides={"m": AnomalySettings(model="robust_baseline")})
    later.restore("m", json.loads(json.dumps(stage.checkpoint("m"))))
    assert later.score("m", nxt) == stage.score("m", nxt)
