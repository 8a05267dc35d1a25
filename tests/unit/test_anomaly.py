"""Online anomaly detection: scale invariance, correlated and slow faults, warm-up, contributions,
checkpoints, the univariate baseline, and a small labelled-fault benchmark."""

from __future__ import annotations

import functools
import itertools
import json

import numpy as np
import pytest

from plantstream.bench.anomaly import frame_cost, run_benchmark, synthetic_frames
from plantstream.core.config import AnomalySettings, Asset, Settings
from processors.anomaly.estimators import DecayedQuantile, DecayedQuantiles, cross_coefficients
from processors.anomaly.model import AnomalyStage, MultivariateModel, RobustBaseline, feature_tags, model_for

S = 1_000_000
TAGS = ("a", "b", "c")
CFG = AnomalySettings(model="multivariate", warmup_frames=300, window_frames=2000)


def frame(i: int, values: dict[str, float], bad: tuple[str, ...] = ()) -> dict:
    return {
        "asset": "t.s.a.l.m",
        "scan_time": i * S,
        "samples": [
            {"tag": k, "source_time": i * S, "value": None if k in bad else v, "quality": "BAD" if k in bad else "GOOD"}
            for k, v in values.items()
        ],
    }


def correlated(n: int, seed: int = 0) -> np.ndarray:
    """a, b, c driven by one slowly varying load, each with its own small noise: strongly correlated."""
    rng = np.random.default_rng(seed)
    i = np.arange(n)
    # stationary: the warm-up sees the whole operating range
    load = np.sin(2 * np.pi * i / 97) + 0.7 * np.sin(2 * np.pi * i / 151 + rng.uniform(0, 6)) + rng.normal(0, 0.3, n)
    load = (load - load.mean()) / (load.std() + 1e-12)
    noise = rng.normal(0, 0.1, (n, 3))
    return np.column_stack([10 + 2 * load, 5 + 1 * load, -3 + 0.5 * load]) + noise * [2, 1, 0.5]


def run(model: MultivariateModel | RobustBaseline, rows: np.ndarray, tags: tuple[str, ...] = TAGS) -> list[dict]:
    out = []
    for i, row in enumerate(rows):
        rec = model.update(frame(i, dict(zip(tags, map(float, row), strict=True))))
        assert rec is not None
        out.append(rec)
    return out


def first_alarm(recs: list[dict], start: int = 0) -> int | None:
    return next((i for i, r in enumerate(recs) if i >= start and r["is_anomaly"]), None)


def test_scaling_one_sensor_by_1000_gives_the_same_scores() -> None:
    rows = correlated(800)
    scaled = rows.copy()
    scaled[:, 1] *= 1000.0
    a = run(MultivariateModel("m", CFG, TAGS), rows)
    b = run(MultivariateModel("m", CFG, TAGS), scaled)
    sa, sb = np.array([r["score"] for r in a]), np.array([r["score"] for r in b])
    assert np.allclose(sa, sb, rtol=1e-6, atol=1e-9)
    assert [r["is_anomaly"] for r in a] == [r["is_anomaly"] for r in b]


def test_broken_correlation_within_each_sensors_normal_range_is_detected() -> None:
    rows = correlated(1600, seed=1)
    lo, hi = rows[:1000].min(axis=0), rows[:1000].max(axis=0)
    fault = rows.copy()
    # from frame 1200, b moves against the load, staying inside its own normal range
    centre_b = (lo[1] + hi[1]) / 2
    fault[1200:, 1] = np.clip(centre_b - (rows[1200:, 1] - centre_b) * 0.9, lo[1], hi[1])
    inside = np.all((fault[1200:, 1] >= lo[1]) & (fault[1200:, 1] <= hi[1]))
    assert inside, "the test fault must stay within b's normal range, so no per-sensor threshold sees it"
    recs = run(MultivariateModel("m", CFG, TAGS), fault)
    assert first_alarm(recs) is not None and first_alarm(recs) >= 1200  # type: ignore[operator]
    clean = run(MultivariateModel("m", CFG, TAGS), rows)
    assert first_alarm(clean, 300) is None or first_alarm(clean, 300) >= 1200  # type: ignore[operator]


def test_slow_drift_is_detected_and_blamed_on_the_drifting_tag() -> None:
    rows = correlated(3000, seed=2)
    drift = rows.copy()
    ramp = np.clip((np.arange(3000) - 1500) / 1200.0, 0, None)  # 0 -> 1.25 over the last 1500 frames
    drift[:, 2] += ramp * 2.0  # c drifts by ~8 noise sigmas, slowly
    recs = run(MultivariateModel("m", CFG, TAGS), drift)
    at = first_alarm(recs, 300)
    assert at is not None and at > 1500
    top = max(recs[at]["contributions"].items(), key=lambda kv: kv[1])[0]
    assert top == "c"
    assert sum(recs[at]["contributions"].values()) == pytest.approx(1.0)


def test_warm_up_emits_warming_up_then_judges() -> None:
    recs = run(MultivariateModel("m", CFG, TAGS), correlated(400))
    assert all(r["warming_up"] and not r["is_anomaly"] for r in recs[:300])
    assert not any(r["warming_up"] for r in recs[300:])
    assert recs[350]["threshold"] > 0
    assert set(recs[350]) == {
        "asset",
        "time",
        "model",
        "score",
        "threshold",
        "is_anomaly",
        "warming_up",
        "contributions",
    }


def test_stuck_sensor_is_flagged_and_named() -> None:
    rows = correlated(1200, seed=3)
    rows[900:, 0] = rows[900, 0]
    recs = run(MultivariateModel("m", CFG.model_copy(update={"stuck_frames": 30}), TAGS), rows)
    at = first_alarm(recs, 300)
    assert at is not None and 900 <= at < 960
    assert max(recs[at]["contributions"].items(), key=lambda kv: kv[1])[0] == "a"


def test_checkpoint_round_trip_continues_identically() -> None:
    rows = correlated(900, seed=4)
    rows[700:, 1] += 3.0
    m = MultivariateModel("m", CFG, TAGS)
    run(m, rows[:500])
    state = json.loads(json.dumps(m.to_state()))  # through JSON, as a Faust table would store it
    stage = AnomalyStage()
    stage.restore("m", state)
    restored = stage.models["m"]
    assert restored is not None
    after_a = [m.update(frame(i, dict(zip(TAGS, map(float, r), strict=True)))) for i, r in enumerate(rows[500:])]
    after_b = [restored.update(frame(i, dict(zip(TAGS, map(float, r), strict=True)))) for i, r in enumerate(rows[500:])]
    assert after_a == after_b
    assert any(r is not None and r["is_anomaly"] for r in after_a)


def test_checkpoint_taken_during_an_alarm_continues_identically() -> None:
    rows = correlated(1300, seed=5)
    rows[700:, 1] += 3.0
    rows[900:, 0] += 4.0  # a second incident on another signal while the first alarm is up
    m = MultivariateModel("m", CFG, TAGS)
    recs = run(m, rows[:905])
    assert recs[-1]["is_anomaly"]
    restored = MultivariateModel.from_state(json.loads(json.dumps(m.to_state())))
    later = [frame(905 + i, dict(zip(TAGS, map(float, r), strict=True))) for i, r in enumerate(rows[905:])]
    assert [m.update(f) for f in later] == [restored.update(f) for f in later]
    assert m.to_state() == restored.to_state()


def test_a_fault_on_another_signal_during_an_alarm_raises_its_own_alarm() -> None:
    rows = correlated(1500, seed=6)
    rows[600:1400, 1] += 1.0  # b breaks its relations (10 noise sigmas): one long alarm
    rows[1000:1040, 0] += 3.0  # meanwhile a spike on a (15 sigmas)
    recs = run(MultivariateModel("m", CFG, TAGS), rows)
    flags = [r["is_anomaly"] for r in recs]
    starts = [i for i in range(1, len(flags)) if flags[i] and not flags[i - 1]]
    assert any(600 <= i < 700 for i in starts), starts
    assert any(1000 <= i < 1060 for i in starts), starts  # not hidden behind b's alarm
    top = max(recs[starts[-1]]["contributions"].items(), key=lambda kv: kv[1])[0]
    assert top == "a", recs[starts[-1]]["contributions"]


def test_a_young_model_needs_stronger_evidence() -> None:
    recs = run(MultivariateModel("m", CFG, TAGS), correlated(4000, seed=9))
    first, settled = recs[CFG.warmup_frames]["threshold"], recs[-1]["threshold"]
    # right after warm-up the thresholds rest on a few hundred frames: several times the margin, then the margin
    assert first > 3 * CFG.threshold_margin
    assert settled == pytest.approx(CFG.threshold_margin)
    levels = [r["threshold"] for r in recs[CFG.warmup_frames :] if not r["is_anomaly"]]
    assert all(a >= b for a, b in itertools.pairwise(levels))  # it only relaxes while all is normal


def _rows_with_slow_drift(n: int, start: int, seed: int) -> np.ndarray:
    rows = correlated(n, seed=seed)
    rows[:, 2] += np.clip((np.arange(n) - start) / 1500.0, 0, 1) * 1.5  # c: ~6 noise sigmas over 1500 frames
    return rows


def test_checkpoint_round_trip_with_drift_references_continues_identically() -> None:
    cfg = CFG.model_copy(update={"window_frames": 400})  # the drift reference starts after one window
    rows = _rows_with_slow_drift(4000, 2900, seed=7)
    m = MultivariateModel("m", cfg, TAGS)
    run(m, rows[:2800])
    assert m.ref_proj is not None and m.cand_proj is not None and m.ref_age > 0  # two snapshots taken, both kept
    assert not np.array_equal(m.ref_mean, m.cand_mean)
    restored = MultivariateModel.from_state(json.loads(json.dumps(m.to_state())))
    later = [frame(i, dict(zip(TAGS, map(float, r), strict=True))) for i, r in enumerate(rows[2800:])]
    after_a = [m.update(f) for f in later]
    after_b = [restored.update(f) for f in later]
    assert after_a == after_b
    assert any(r is not None and r["is_anomaly"] for r in after_a)
    assert m.to_state() == restored.to_state()


def test_drift_detector_judges_against_a_reference_older_than_the_drift() -> None:
    cfg = CFG.model_copy(update={"window_frames": 400})
    rows = _rows_with_slow_drift(3400, 1900, seed=8)
    m = MultivariateModel("m", cfg, TAGS)
    recs = run(m, rows)
    # the live fit has learned part of the drift (its mean followed it); the reference, taken before the last
    # snapshot (1200-2400 frames ago), sees it whole
    assert m.ref_proj is not None and m.ref_mean is not None and m.z_scale is not None and m.r_prev is not None
    x = rows[-1]
    assert m.filt is not None
    y = np.concatenate([x, m.filt, x * x])
    z_ref = m.ref_proj @ (y - m.ref_mean)
    z_live = m.r_prev * m.z_scale[0]
    assert abs(z_ref[2]) > 1.5 * abs(z_live[2]) and abs(z_ref[2]) > 3.0
    at = first_alarm(recs, 1900)
    assert at is not None
    assert max(recs[at]["contributions"].items(), key=lambda kv: kv[1])[0] == "c"


def test_missing_and_bad_values_carry_the_last_value() -> None:
    m = MultivariateModel("m", CFG, TAGS)
    assert m.update(frame(0, {"a": 1.0, "b": 2.0})) is None  # c never seen: nothing to carry yet
    assert m.update(frame(1, {"a": 1.0, "b": 2.0, "c": 3.0})) is not None
    rec = m.update(frame(2, {"a": 1.1, "b": 2.1, "c": 0.0}, bad=("c",)))
    assert rec is not None and m.features.last[2] == 3.0 and m.features.carried == 1


def test_robust_baseline_flags_a_univariate_spike() -> None:
    cfg = AnomalySettings(model="robust_baseline", warmup_frames=200, window_frames=300)
    rng = np.random.default_rng(5)
    x = 20 + rng.normal(0, 0.5, 600)
    x[450:460] += 6.0
    model = model_for("m", cfg, ["level"])
    assert isinstance(model, RobustBaseline)
    recs = run(model, x.reshape(-1, 1), ("level",))
    alarms = [i for i, r in enumerate(recs) if r["is_anomaly"]]
    assert alarms and 450 <= alarms[0] < 462
    assert all(450 <= i < 480 for i in alarms)
    clone = RobustBaseline.from_state(json.loads(json.dumps(model.to_state())))
    nxt = frame(600, {"level": 20.3})
    assert clone.update(nxt) == model.update(nxt)


def test_model_choice_follows_config() -> None:
    assert model_for("m", AnomalySettings(model="off"), ["a", "b"]) is None
    assert isinstance(model_for("m", None, ["a", "b"]), MultivariateModel)
    assert isinstance(model_for("m", None, ["a"]), RobustBaseline)
    with pytest.raises(ValueError, match="robust_baseline"):
        model_for("m", AnomalySettings(model="multivariate"), ["a"])
    asset = Asset(path="a.b.c.d.e", anomaly={"model": "robust_baseline", "warmup_frames": 50})
    assert asset.anomaly is not None and asset.anomaly.warmup_frames == 50


def test_feature_tags_are_numeric_process_values() -> None:
    s = Settings(
        plant={"assets": [{"path": "a.b.c.d.e", "anomaly": {"model": "off"}}]},
        devices=[
            {
                "name": "d",
                "protocol": "modbus_tcp",
                "asset": "a.b.c.d.e",
                "tags": [
                    {"name": "flow", "type": "float32", "address": 0},
                    {"name": "total", "role": "counter_total", "type": "uint32", "address": 2},
                    {"name": "run", "type": "bool", "table": "coil", "address": 0},
                    {"name": "pressure", "type": "float32", "address": 4},
                ],
            }
        ],
    )
    assert feature_tags(s, "a.b.c.d.e") == ["flow", "pressure"]
    assert AnomalyStage(s).score("a.b.c.d.e", frame(0, {"flow": 1.0, "pressure": 2.0})) is None  # model off


@functools.cache
def _small_bench() -> dict:
    """Seeds 21-23 (never used for tuning, which used seeds 1-3), 2 pumps x 3 simulated hours each, pooled."""
    runs = [run_benchmark(seed=s, assets=2, hours=3) for s in (21, 22, 23)]
    tp, faults = sum(r["detected"] for r in runs), sum(r["faults"] for r in runs)
    fp = sum(r["false_alarms"] for r in runs)
    precision, recall = tp / max(tp + fp, 1), tp / max(faults, 1)
    kinds: dict[str, dict[str, int]] = {}
    for r in runs:
        for k, v in r["per_kind"].items():
            kk = kinds.setdefault(k, {"faults": 0, "detected": 0})
            kk["faults"] += v["faults"]
            kk["detected"] += v["detected"]
    return {
        "faults": faults,
        "f1": 2 * precision * recall / max(precision + recall, 1e-12),
        "false_alarms_per_asset_hour": fp / (3 * 2 * 3),
        "per_kind": kinds,
    }


def test_small_benchmark_keeps_false_alarms_low() -> None:
    r = _small_bench()
    assert r["faults"] >= 10
    assert r["false_alarms_per_asset_hour"] <= 1.0, r
    # regression guard well below today's level (see the quality bar below)
    assert r["f1"] >= 0.8, r
    stuck = r["per_kind"].get("stuck", {"faults": 0, "detected": 0})
    assert stuck["detected"] == stuck["faults"], r["per_kind"]


def test_small_benchmark_meets_the_quality_bar() -> None:
    # issue 4: event F1 >= 0.9 at <= 1 false alarm per asset-hour (xreg-multiscale/5; /4 gave 0.84 here)
    r = _small_bench()
    assert r["f1"] >= 0.9 and r["false_alarms_per_asset_hour"] <= 1.0, r


def test_decayed_quantiles_match_one_histogram_per_statistic_and_restore_exactly() -> None:
    rng = np.random.default_rng(11)
    one = [DecayedQuantile(0.995, 300) for _ in range(3)]
    many = DecayedQuantiles(0.995, 300, 3)
    assert np.all(np.isinf(many.get()))
    agree = 0
    for i in range(3000):
        v = rng.exponential([1.0, 50.0, 0.01]) * (4.0 if i > 1500 else 1.0)  # a change the window forgets
        for q, x in zip(one, v.tolist(), strict=True):
            q.update(x)
        many.update(v.tolist())
        agree += bool(np.allclose(many.get(), [q.get() for q in one], rtol=1e-9))
    assert agree >= 2990  # the incremental bin search agrees but for exact ties at a bin edge
    clone = DecayedQuantiles.from_state(json.loads(json.dumps(many.to_state())))
    for v in ([3.0, 0.2, 1e-4], [9.0, 400.0, 0.5]):
        many.update(v)
        clone.update(v)
        assert clone.get().tolist() == many.get().tolist()


def test_cross_coefficients_equal_one_ridge_solve_per_signal() -> None:
    rng = np.random.default_rng(12)
    p, k = 6, 4
    data = rng.normal(size=(2000, 2)) @ rng.normal(size=(2, p * k)) + 0.3 * rng.normal(size=(2000, p * k))
    corr = np.corrcoef(data, rowvar=False)
    owner = np.tile(np.arange(p), k)
    got = cross_coefficients(corr, owner, p, 0.003)
    reg = corr + 0.003 * np.eye(p * k)
    for j in range(p):
        others = np.flatnonzero(owner != j)
        want = np.linalg.solve(reg[np.ix_(others, others)], corr[others, j])
        assert np.allclose(got[j, others], want, atol=1e-9)
        assert np.all(got[j, owner == j] == 0.0)


def test_a_checkpoint_of_an_older_model_version_warms_up_afresh() -> None:
    stage = AnomalyStage(overrides={"m": CFG})
    for i, row in enumerate(correlated(50)):
        stage.score("m", frame(i, dict(zip(TAGS, map(float, row), strict=True))))
    state = stage.checkpoint("m")
    assert state is not None
    stage.restore("m", {**state, "version": 2})  # written by xreg-multiscale/2
    assert "m" not in stage.models  # dropped: the next frame starts a new model instead of crashing the worker
    rec = stage.score("m", frame(50, {"a": 1.0, "b": 2.0, "c": 3.0}))
    assert rec is not None and rec["warming_up"]
    with pytest.raises(ValueError, match="warms up again"):
        MultivariateModel.from_state({**state, "version": 2})


def test_feature_vector_takes_numbers_only_and_the_last_duplicate() -> None:
    m = MultivariateModel("m", CFG, TAGS)
    f = frame(0, {"a": 1.0, "b": 2.0, "c": 3.0})
    f["samples"] += [
        {"tag": "a", "value": 5, "quality": "GOOD"},  # a later int sample of a wins
        {"tag": "b", "value": float("nan"), "quality": "GOOD"},  # not a number: b keeps 2.0
        {"tag": "c", "value": True, "quality": "GOOD"},  # a bool is no process value
        {"tag": "zzz", "value": 9.0, "quality": "GOOD"},  # not a feature
    ]
    assert m.update(f) is not None
    assert m.features.last == [5.0, 2.0, 3.0] and m.features.carried == 0


def test_frame_cost_is_measured_on_a_correlated_many_tag_asset() -> None:
    frames = synthetic_frames(8, 3)
    assert len(frames) == 3 and len(frames[0]["samples"]) == 8
    r = frame_cost(8, warmup=100, frames=50, runs=1)
    assert r["ms_per_frame"] > 0 and r["tags"] == 8
