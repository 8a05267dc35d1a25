"""Benchmark of the online anomaly detector on labelled simulated faults (plantstream/simulators/faults.py).

Event-level scoring: each ground-truth fault interval is an event; it is detected when an alarm
starts inside [start, end + tolerance). An alarm event (a run of is_anomaly frames) that overlaps no
fault interval (extended by the tolerance) is a false alarm. Frames go through `AnomalyStage.score`
exactly as the worker would feed them, one frame per scan with every tag as a sample.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from plantstream.core.config import AnomalySettings
from plantstream.core.records import ReadingFrame, reading_frame, sample
from plantstream.simulators.faults import PUMP_TAGS, UNITS, Fault, faulty_series
from processors.anomaly.model import AnomalyStage, MultivariateModel

S = 1_000_000
T0_US = 1_767_225_600 * S  # 2026-01-01T00:00:00Z: simulated time starts here
MODEL_NAME = MultivariateModel.name


def asset_names(n: int) -> list[str]:
    return [f"bench.site.utilities.water.pump{i + 1}" for i in range(n)]


def alarm_events(times: Sequence[float], flags: Sequence[bool]) -> list[tuple[float, float]]:
    """Runs of True as (start, end) in the same time unit; an open run ends at the last time."""
    out: list[tuple[float, float]] = []
    start: float | None = None
    for t, f in zip(times, flags, strict=True):
        if f and start is None:
            start = t
        elif not f and start is not None:
            out.append((start, t))
            start = None
    if start is not None:
        out.append((start, times[-1]))
    return out


def score_events(
    faults: Sequence[Fault], alarms: Sequence[tuple[float, float]], tolerance_s: float
) -> tuple[int, int, int, list[float]]:
    """-> (detected faults, missed faults, false alarms, detection delays in s)."""
    detected, delays = 0, []
    for f in faults:
        starts = [a for a, _ in alarms if f.start_s <= a < f.end_s + tolerance_s]
        if starts:
            detected += 1
            delays.append(min(starts) - f.start_s)
    false = sum(1 for a, b in alarms if not any(a < f.end_s + tolerance_s and b >= f.start_s for f in faults))
    return detected, len(faults) - detected, false, delays


def run_benchmark(
    seed: int = 1,
    assets: int = 3,
    hours: float = 6.0,
    *,
    dt_s: float = 1.0,
    tolerance_s: float = 60.0,
    settings: AnomalySettings | None = None,
    bad_sample_rate: float = 0.001,
) -> dict[str, Any]:
    """Simulate, inject, score and measure; returns JSON-able figures (per kind too)."""
    names = asset_names(assets)
    t_gen = time.perf_counter()
    times, data, truth = faulty_series(seed, names, hours, dt_s)
    gen_s = time.perf_counter() - t_gen
    cfg = settings or AnomalySettings(model="multivariate")
    stage = AnomalyStage(overrides={a: cfg for a in names})
    rng = np.random.default_rng((seed, 99))
    per_asset: dict[str, Any] = {}
    all_delays: list[float] = []
    tp = fn = fp = 0
    kinds: dict[str, dict[str, int]] = {}
    score_s = 0.0
    frames = 0
    times_l = times.tolist()
    for asset in names:
        cols = {tag: data[asset][tag].tolist() for tag in PUMP_TAGS}
        # a few BAD samples, as real links drop values: the model carries the last value
        bad = rng.random((len(times_l), len(PUMP_TAGS))) < bad_sample_rate
        flags: list[bool] = []
        flag_times: list[float] = []
        t_score = time.perf_counter()
        for i, t in enumerate(times_l):
            frame = reading_frame(
                asset=asset,
                device="bench",
                seq=i,
                producer_id="bench",
                scan_time=T0_US + int(t * S),
                samples=[
                    sample(
                        tag,
                        T0_US + int(t * S),
                        None if bad[i, j] else cols[tag][i],
                        "BAD" if bad[i, j] else "GOOD",
                        UNITS[tag],
                    )
                    for j, tag in enumerate(PUMP_TAGS)
                ],
            )
            rec = stage.score(asset, frame)
            if rec is not None:
                flags.append(rec["is_anomaly"])
                flag_times.append(t)
        score_s += time.perf_counter() - t_score
        frames += len(times_l)
        faults = [f for f in truth if f.asset == asset]
        alarms = alarm_events(flag_times, flags)
        d, m, fa, delays = score_events(faults, alarms, tolerance_s)
        tp, fn, fp = tp + d, fn + m, fp + fa
        all_delays += delays
        for f in faults:
            k = kinds.setdefault(f.kind, {"faults": 0, "detected": 0})
            k["faults"] += 1
            k["detected"] += int(score_events([f], alarms, tolerance_s)[0])
        per_asset[asset] = {"faults": len(faults), "detected": d, "false_alarms": fa, "alarm_events": len(alarms)}
    # precision over alarm events: a fault caught by several alarm starts counts once
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "seed": seed,
        "assets": assets,
        "hours": hours,
        "frame_interval_s": dt_s,
        "tolerance_s": tolerance_s,
        "model": MODEL_NAME if cfg.model != "robust_baseline" else "rolling-median-mad/1",
        "settings": cfg.model_dump(),
        "faults": tp + fn,
        "detected": tp,
        "missed": fn,
        "false_alarms": fp,
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "false_alarms_per_asset_hour": round(fp / (assets * hours), 4),
        "detection_delay_median_s": statistics.median(all_delays) if all_delays else None,
        "per_kind": kinds,
        "per_asset": per_asset,
        "frames": frames,
        "frames_per_s": round(frames / score_s, 1) if score_s else None,
        "generate_s": round(gen_s, 2),
        "ground_truth": [f.as_dict() for f in truth],
    }


def machine_description() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "note": "2 cores shared with other engineers' test runs; frames/s is indicative only",
    }


def synthetic_frames(tags: int, frames: int, seed: int = 0) -> list[ReadingFrame]:
    """Frames of a `tags`-signal asset driven by a few shared loads (correlated, different scales), as the
    worker receives them: one sample per tag, GOOD quality, 1 frame/s."""
    if tags < 2 or frames < 1:
        raise ValueError(f"synthetic_frames needs tags >= 2 and frames >= 1, got tags={tags}, frames={frames}")
    rng = np.random.default_rng((seed, tags))
    i = np.arange(frames)
    loads = np.stack([np.sin(2 * np.pi * i / (97 + 31 * k) + rng.uniform(0, 6)) for k in range(3)])
    mix = rng.normal(0, 1, (tags, 3))
    scale = 10.0 ** rng.uniform(-2, 3, tags)  # sensors from 0.01 to 1000 units
    values = (mix @ loads + 0.1 * rng.standard_normal((tags, frames))) * scale[:, None] + scale[:, None]
    names = [f"tag{k:03d}" for k in range(tags)]
    cols = values.T.tolist()
    return [
        reading_frame(
            asset="bench.cost",
            device="bench",
            seq=j,
            producer_id="bench",
            scan_time=T0_US + j * S,
            samples=[sample(n, T0_US + j * S, v) for n, v in zip(names, cols[j], strict=True)],
        )
        for j in range(frames)
    ]


def frame_cost(
    tags: int, *, warmup: int = 1200, frames: int = 2000, runs: int = 5, settle: int | None = None
) -> dict[str, Any]:
    """Milliseconds per `AnomalyStage.score` call once warmed up (median over `runs` fresh models), and over
    the warm-up. The frames are built beforehand: only the stage is timed. `settle` frames after the warm-up are
    scored untimed (default: up to one `window_frames`, when the drift reference exists), so the steady state
    includes everything a long-running model does."""
    cfg = AnomalySettings(model="multivariate", warmup_frames=warmup)
    settle = max(cfg.window_frames - warmup, 0) if settle is None else settle
    data = synthetic_frames(tags, warmup + settle + frames)
    steady, warm = [], []
    for _ in range(runs):
        stage = AnomalyStage(overrides={"bench.cost": cfg})
        t0 = time.perf_counter()
        for f in data[:warmup]:
            stage.score("bench.cost", f)
        t_warm = time.perf_counter()
        for f in data[warmup : warmup + settle]:
            stage.score("bench.cost", f)
        t1 = time.perf_counter()
        for f in data[warmup + settle :]:
            stage.score("bench.cost", f)
        t2 = time.perf_counter()
        warm.append((t_warm - t0) / warmup * 1e3)
        steady.append((t2 - t1) / frames * 1e3)
    return {
        "tags": tags,
        "ms_per_frame": round(statistics.median(steady), 4),
        "ms_per_frame_warmup": round(statistics.median(warm), 4),
        "runs": runs,
        "frames": frames,
        "warmup_frames": warmup,
        "settle_frames": settle,
    }


def run_suite(
    seeds: Sequence[int], assets: int, hours: float, settings: AnomalySettings | None = None
) -> dict[str, Any]:
    """`run_benchmark` per seed, and the pooled figures over all seeds (events summed, not F1s averaged)."""
    per_seed: dict[str, Any] = {}
    tp = faults = fp = 0
    kinds: dict[str, dict[str, int]] = {}
    for seed in seeds:
        r = run_benchmark(seed=seed, assets=assets, hours=hours, settings=settings)
        per_seed[str(seed)] = {k: v for k, v in r.items() if k not in ("ground_truth", "settings", "per_asset")}
        tp, faults, fp = tp + r["detected"], faults + r["faults"], fp + r["false_alarms"]
        for k, v in r["per_kind"].items():
            kk = kinds.setdefault(k, {"faults": 0, "detected": 0})
            kk["faults"] += v["faults"]
            kk["detected"] += v["detected"]
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / faults if faults else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    total = {
        "faults": faults,
        "detected": tp,
        "false_alarms": fp,
        "precision": round(precision, 3),
        "recall": round(recall, 3),
        "f1": round(f1, 3),
        "false_alarms_per_asset_hour": round(fp / (len(seeds) * assets * hours), 3),
        "per_kind_recall": {k: round(v["detected"] / v["faults"], 3) for k, v in sorted(kinds.items())},
        "per_kind": kinds,
    }
    return {"seeds": per_seed, "total": total}


# seeds of the three sets: tuned on TUNING_SEEDS; VALIDATION_SEEDS were the held-out set of earlier models and have
# been looked at while tuning, so they only validate; FRESH_SEEDS were never run before the final settings were fixed
# (2026-11-27, xreg-multiscale/5) and are the reported figure
TUNING_SEEDS = tuple(range(1, 11))
VALIDATION_SEEDS = (11, 12, 13, 14, 15)
FRESH_SEEDS = tuple(range(101, 111))
BENCH_ASSETS, BENCH_HOURS = 3, 6.0


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m plantstream.bench.anomaly [--json-out PATH]`: tuning seeds 1-10, validation seeds 11-15, fresh
    held-out seeds 101-110 (3 pumps x 6 h each) and the per-frame cost at 5, 20 and 50 tags, as one JSON document."""
    import argparse
    import json
    from pathlib import Path

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--json-out", default=None, help="also write the JSON here")
    ap.add_argument("--runs", type=int, default=5, help="runs of the per-frame cost; the median is reported")
    args = ap.parse_args(argv)
    tuning = run_suite(TUNING_SEEDS, BENCH_ASSETS, BENCH_HOURS)
    validation = run_suite(VALIDATION_SEEDS, BENCH_ASSETS, BENCH_HOURS)
    fresh = run_suite(FRESH_SEEDS, BENCH_ASSETS, BENCH_HOURS)
    result = {
        "description": "plantstream anomaly bench: MultivariateModel with default AnomalySettings on simulated pumps "
        "(plantstream/simulators/faults.py), 1 frame/s, 3 pumps x 6 h per seed. Tuned on seeds 1-10; "
        "seeds 11-15 (the earlier held-out set, looked at during earlier tuning) validate; "
        "seeds 101-110 are a fresh held-out set, run once "
        "with the final settings: fresh_held_out_total is the reported figure. "
        "Event: fault interval; detected if an alarm starts in [start, end+60 s); false alarm: alarm event "
        "overlapping no [start, end+60 s). frame_cost: ms per AnomalyStage.score once warmed up, median of runs.",
        "command": "OPENBLAS_NUM_THREADS=1 nice -n 19 python -m plantstream.bench.anomaly --json-out PATH "
        "(one seed: plantstream bench anomaly --seed N)",
        "model": MODEL_NAME,
        "machine": machine_description(),
        "settings": AnomalySettings(model="multivariate").model_dump(),
        "seed_sets": {
            "tuning": list(TUNING_SEEDS),
            "validation": list(VALIDATION_SEEDS),
            "fresh_held_out": list(FRESH_SEEDS),
            "assets_per_seed": BENCH_ASSETS,
            "hours_per_seed": BENCH_HOURS,
        },
        "fresh_held_out_total": fresh["total"],
        "tuning_total": tuning["total"],
        "validation_total": validation["total"],
        "frame_cost": [frame_cost(t, runs=args.runs) for t in (5, 20, 50)],
        "tuning": tuning["seeds"],
        "validation": validation["seeds"],
        "fresh_held_out": fresh["seeds"],
    }
    text = json.dumps(result, indent=2)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
