"""`plantstream bench memory`: RSS of one real Faust worker holding the state of 1,000 assets x 20 tags.

The worker starts on empty topics (RSS "before"), then a synthetic plant (plantstream/simulators/synthetic.py) of
`assets` machines x `tags` tags sends `frames_per_asset` frames each, at 1 scan/s of event time (the
default 90 frames with 60 s windows: each asset has closed one window and has the next one open). Every
asset then has KPI windows for all its tags, OEE and machine-state state, alert-rule state and a model
warmed up (warm-up set to `warmup_frames`, so the models judge, not only learn). RSS is read from /proc while it
runs and once it has processed every frame ("after").

Some model state keeps growing after a short run (e.g. the recent-score window of the adaptive
threshold). So the worker figure is complemented by a projection made with AnomalyStage's public API
alone: the Python heap of a few models at `frames_per_asset` frames and at steady state (after many
frames), the difference scaled to every asset.
"""

from __future__ import annotations

import os
import time
import tracemalloc
from pathlib import Path
from typing import Any

from plantstream.bench.alerts import NOTE
from plantstream.bench.common import machine, open_run, proc_usage, run_pipeline_section
from plantstream.bench.worker import fill_backlog
from plantstream.core import runstats
from plantstream.core.config import Settings
from plantstream.simulators.synthetic import SyntheticPlant
from plantstream.up import say

TARGET_MB = 500
MB = 2**20


def bench_raw(plant: SyntheticPlant, warmup_frames: int, pipeline: dict[str, Any]) -> dict[str, Any]:
    """The synthetic plant as a config, every asset's anomaly model warmed up after `warmup_frames`."""
    raw = plant.config()
    for a in raw["plant"]["assets"]:
        a["anomaly"] = {"warmup_frames": warmup_frames}
    raw["pipeline"] = {**pipeline, "alerts": plant.alert_rules()}
    return raw


def model_growth(
    raw: dict[str, Any], frames_per_asset: int, steady_frames: int, sample_assets: int = 5
) -> dict[str, Any]:
    """Python heap of AnomalyStage models after `frames_per_asset` and after `steady_frames` frames each."""
    from processors.anomaly.model import AnomalyStage

    settings = Settings(**raw)
    n = min(sample_assets, len(settings.plant.assets))
    plant = SyntheticPlant(n, len(raw["devices"][0]["tags"]), 1.0, seed=1)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        stage = AnomalyStage(settings)
        at_short = 0
        for k in range(steady_frames):
            for a in range(n):
                frame = plant.frame(a, 1_767_225_600_000_000 + k * 1_000_000)
                stage.score(frame["asset"], frame)
            if k + 1 == frames_per_asset:
                at_short = tracemalloc.get_traced_memory()[0] - base
        at_steady = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    return {
        "sample_assets": n,
        "bytes_per_model_at_short_run": round(at_short / n),
        "bytes_per_model_at_steady_state": round(at_steady / n),
        "steady_state_frames": steady_frames,
    }


def run_memory_bench(
    settings: Settings,
    *,
    assets: int = 1000,
    tags: int = 20,
    frames_per_asset: int = 90,
    warmup_frames: int = 20,
    steady_frames: int = 2500,
    timeout_s: float = 900,
) -> dict[str, Any]:
    if frames_per_asset <= warmup_frames:
        raise ValueError(
            f"frames_per_asset ({frames_per_asset}) must exceed warmup_frames ({warmup_frames}) for warmed-up models"
        )
    plant = SyntheticPlant(assets, tags, 1.0)

    def build(bootstrap: str, url: str, run_dir: Path) -> dict[str, Any]:
        return bench_raw(
            plant,
            warmup_frames,
            run_pipeline_section("benchm", bootstrap, url, run_dir),
        )

    run = open_run(settings, "memory", build)
    bench_settings, run_dir, raw = run.settings, run.run_dir, run.raw
    worker = run.spawn("processor", "process")
    pid = worker.proc.pid if worker.proc else 0
    frames = assets * frames_per_asset
    total = frames * tags
    series: list[tuple[float, float]] = []
    try:
        time.sleep(8)  # started, joined its group, idle: the baseline
        rss_before = proc_usage(pid)[1]
        say(f"bench memory: worker idle at {rss_before / MB:.0f} MB; sending {frames:,} frames ({total:,} samples)")
        load_at_start = round(os.getloadavg()[0], 2)  # other people's work on the shared CPUs
        t0 = time.monotonic()
        fill_backlog(bench_settings, plant, frames, t0_us=1_767_225_600_000_000)
        done = 0
        while time.monotonic() - t0 < timeout_s:
            time.sleep(1.0)
            rss = proc_usage(pid)[1]
            series.append((round(time.monotonic() - t0, 1), round(rss / MB, 1)))
            done = runstats.read_all(run_dir).get("processor", {}).get("counts", {}).get("samples_in", 0)
            if done >= total:
                break
            if worker.proc and worker.proc.poll() is not None:
                raise RuntimeError(f"the worker exited early with code {worker.proc.returncode}; see {worker.log}")
        if done < total:
            raise RuntimeError(f"the worker processed {done:,} of {total:,} samples in {timeout_s:.0f}s")
        time.sleep(3)  # the last batch's outputs and checkpoints
        rss_after = proc_usage(pid)[1]
        counts = runstats.read_all(run_dir).get("processor", {}).get("counts", {})
    finally:
        worker.stop(30)
        run.close()
    growth = model_growth(raw, frames_per_asset, steady_frames)
    extra = (growth["bytes_per_model_at_steady_state"] - growth["bytes_per_model_at_short_run"]) * assets
    rss_max = max([rss_after / MB, *(r for _, r in series)])
    projected = rss_max + max(0, extra) / MB
    return {
        "bench": "memory",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "load_average_1m_start_end": [load_at_start, round(os.getloadavg()[0], 2)],
        "note": NOTE + " RSS does not depend on CPU contention much; the time to process the frames does.",
        "load": {
            "assets": assets,
            "tags_per_asset": tags,
            "frames_per_asset": frames_per_asset,
            "samples": total,
            "anomaly_warmup_frames": warmup_frames,
            "event_time_s_per_asset": frames_per_asset,  # 1 scan/s
            "kpi_window_s": bench_settings.pipeline.windows.kpi_window_s,
            "state": ["kpi windows (open)", "oee + machine state", "alert rules", "anomaly models (warmed up)"],
        },
        "worker_rss_mb": {
            "before": round(rss_before / MB, 1),
            "after": round(rss_after / MB, 1),
            "max": round(rss_max, 1),
            "series": series,
        },
        "anomaly_model_growth": {**growth, "projected_extra_mb_for_all_assets": round(extra / MB, 1)},
        "projected_steady_state_rss_mb": round(projected, 1),
        "target_mb": TARGET_MB,
        "within_target": projected <= TARGET_MB,
        "outputs": {k: counts.get(k, 0) for k in ("kpi_windows", "oee_windows", "anomaly_scores", "alerts_raised")},
    }


def render(result: dict[str, Any]) -> str:
    r = result["worker_rss_mb"]
    return (
        f"worker RSS for {result['load']['assets']:,} assets x {result['load']['tags_per_asset']} tags: before "
        f"{r['before']} MB, after {r['after']} MB, max {r['max']} MB; projected steady state "
        f"{result['projected_steady_state_rss_mb']} MB (target {result['target_mb']} MB)"
    )
