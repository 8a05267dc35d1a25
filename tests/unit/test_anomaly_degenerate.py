"""Degenerate inputs never crash the anomaly models nor make them emit NaN: constant, zero, all-null, stepwise,
huge-range, NaN/inf and single-signal inputs, by example and property-based (hypothesis)."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plantstream.core.config import AnomalySettings
from processors.anomaly.model import AnomalyStage, MultivariateModel

S = 1_000_000
ASSET = "t.s.a.l.m"
EXAMPLES = int(os.environ.get("PLANTSTREAM_FUZZ_EXAMPLES", "60"))


def frame(i: int, values: dict[str, Any]) -> dict[str, Any]:
    return {
        "asset": ASSET,
        "scan_time": i * S,
        "samples": [
            {"tag": k, "source_time": i * S, "value": v, "quality": "GOOD" if v is not None else "BAD"}
            for k, v in values.items()
        ],
    }


def assert_sane(rec: dict[str, Any] | None) -> None:
    if rec is None:
        return
    assert math.isfinite(rec["score"]) and math.isfinite(rec["threshold"]), rec
    assert all(math.isfinite(v) and 0.0 <= v <= 1.0 + 1e-9 for v in rec["contributions"].values()), rec


def checkpoint_is_strict_json(stage: AnomalyStage) -> None:
    state = stage.checkpoint(ASSET)
    if state is not None:
        json.dumps(state, allow_nan=False)  # a Faust table (orjson) would turn NaN into null and break the restore


def test_the_issue_crash_two_noisy_signals_and_one_tag_constant_at_zero() -> None:
    # issue 15: a tag reading exactly 0.0 from the first frame made the variance floor 0, the correlation NaN and
    # every later score NaN (LinAlgError in the worker)
    stage = AnomalyStage(overrides={ASSET: AnomalySettings(warmup_frames=100)})
    rng = np.random.default_rng(0)
    recs = []
    for i in range(600):
        x = float(rng.normal())
        values = {"x": x, "y": 2 * x + float(rng.normal(0, 0.1)), "valve": 0.0}
        if i >= 450:
            values["y"] += 3.0  # a broken relation the two live signals still show
        rec = stage.score(ASSET, frame(i, values))
        assert_sane(rec)
        recs.append(rec)
    checkpoint_is_strict_json(stage)
    judged = [r for r in recs if r is not None and not r["warming_up"]]
    assert judged, "the model became ready"
    assert not any(r["is_anomaly"] for r in judged if r["time"] < 440 * S)
    assert any(r["is_anomaly"] for r in judged if r["time"] >= 450 * S)
    model = stage.models[ASSET]
    assert isinstance(model, MultivariateModel)
    assert model.left_out() == ["valve"]
    assert "valve" not in recs[-1]["contributions"]  # type: ignore[index]


def test_a_left_out_tag_that_starts_moving_joins_without_nan() -> None:
    stage = AnomalyStage(overrides={ASSET: AnomalySettings(warmup_frames=100, window_frames=200)})
    rng = np.random.default_rng(1)
    for i in range(1200):
        x = float(rng.normal())
        motor = 0.0 if i < 500 else 5 * x + float(rng.normal(0, 0.2))  # an idle motor starts
        assert_sane(stage.score(ASSET, frame(i, {"x": x, "y": x + float(rng.normal(0, 0.1)), "motor": motor})))
    model = stage.models[ASSET]
    assert isinstance(model, MultivariateModel) and model.left_out() == []
    checkpoint_is_strict_json(stage)


@pytest.mark.parametrize(
    "kind",
    ["all_constant", "all_zero", "single_signal", "all_null_tag", "huge", "tiny", "steps", "nan_inf", "mixed_types"],
)
def test_degenerate_inputs_by_example(kind: str) -> None:
    rng = np.random.default_rng(2)
    stage = AnomalyStage(overrides={ASSET: AnomalySettings(model="multivariate", warmup_frames=40)})
    for i in range(400):
        a, b = float(rng.normal()), float(rng.normal())
        values: dict[str, Any] = {
            "all_constant": {"a": 3.0, "b": -7.5},
            "all_zero": {"a": 0.0, "b": 0.0},
            "single_signal": {"a": a},
            "all_null_tag": {"a": a, "b": a + b, "c": None},
            "huge": {"a": a * 1e200, "b": b * 1e-200, "c": 1e300 if i % 2 else -1e300},
            "tiny": {"a": 1e-300 * a, "b": 5e-324, "c": a},
            "steps": {"a": float(i // 50), "b": float((i // 50) % 2), "c": a},
            "nan_inf": {"a": [math.nan, math.inf, -math.inf, a][i % 4], "b": b, "c": a + b},
            "mixed_types": {"a": [True, "on", 3, a][i % 4], "b": b, "c": a},
        }[kind]
        assert_sane(stage.score(ASSET, frame(i, values)))
    checkpoint_is_strict_json(stage)


def _signal(kind: str, n: int, seed: int) -> list[Any]:
    rng = np.random.default_rng(seed)
    match kind:
        case "noise":
            return rng.normal(0, 1, n).tolist()
        case "constant":
            return [float(rng.choice([0.0, 1.0, -1e6, 1e-9]))] * n
        case "steps":
            return np.repeat(rng.normal(0, 10, n // 20 + 1), 20)[:n].tolist()
        case "huge":
            return (rng.normal(0, 1, n) * 10.0 ** rng.uniform(-300, 300)).tolist()
        case "spiky":
            x = rng.normal(0, 1, n)
            x[rng.random(n) < 0.05] *= 1e12
            return x.tolist()
        case "nonfinite":
            x = rng.normal(0, 1, n).astype(object)
            x[rng.random(n) < 0.2] = rng.choice([math.nan, math.inf, -math.inf])
            return list(x)
        case "null":
            return [None] * n
        case "sparse":
            x = rng.normal(0, 1, n).astype(object)
            x[rng.random(n) < 0.7] = None
            return list(x)
    raise AssertionError(kind)


SIGNALS = ("noise", "constant", "steps", "huge", "spiky", "nonfinite", "null", "sparse")


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kinds=st.lists(st.sampled_from(SIGNALS), min_size=1, max_size=5),
    model=st.sampled_from(["auto", "multivariate", "robust_baseline", "river"]),
    warmup=st.integers(20, 120),
    n=st.integers(30, 400),
    seed=st.integers(0, 2**16),
    restore_at=st.integers(0, 400),
)
def test_random_frames_give_finite_scores_and_no_exception(
    kinds: list[str], model: str, warmup: int, n: int, seed: int, restore_at: int
) -> None:
    if model == "multivariate" and len(kinds) < 2:
        model = "auto"
    river = {"detector": "anomaly.OneClassSVM" if seed % 2 else "anomaly.GaussianScorer"} if model == "river" else None
    cfg = AnomalySettings(model=model, river=river, warmup_frames=warmup, window_frames=max(50, 2 * warmup))  # type: ignore[arg-type]
    tags = [f"t{j}" for j in range(len(kinds))]
    stage = AnomalyStage(overrides={ASSET: cfg})
    cols = [_signal(k, n, seed + j) for j, k in enumerate(kinds)]
    for i in range(n):
        if i == restore_at:
            state = stage.checkpoint(ASSET)
            if state is not None:
                stage.restore(ASSET, json.loads(json.dumps(state, allow_nan=False)))
        assert_sane(stage.score(ASSET, frame(i, {t: c[i] for t, c in zip(tags, cols, strict=True)})))
    checkpoint_is_strict_json(stage)
