"""A worker says how many of its anomaly models are ready or still warming up: the level
`anomaly_models{state}` of its run file, the Prometheus gauge `plantstream_anomaly_models`, and a
line of `plantstream status` (issue 15: a model that never became ready showed nowhere)."""

from __future__ import annotations

import os
import time

import numpy as np

from plantstream.core.config import AnomalySettings
from plantstream.core.metrics import RunStatsCollector
from plantstream.core.pipeline_status import Sample, view
from plantstream.core.runstats import RunStats
from plantstream.status import render
from processors.anomaly.model import AnomalyStage
from processors.worker.stage import Step
from processors.worker.stages import AnomalyScores
from processors.worker.state import AssetState, TableStore

S = 1_000_000


def frame(asset: str, i: int, rng: np.random.Generator) -> dict:
    load = float(np.sin(i / 15) + rng.normal(0, 0.2))
    values = {"a": 10 + 2 * load, "b": 5 + load, "c": -3 + 0.5 * load}
    return {
        "asset": asset,
        "scan_time": i * S,
        "samples": [{"tag": t, "value": v, "quality": "GOOD"} for t, v in values.items()],
    }


def test_models_by_state_in_stats_metrics_and_status() -> None:
    cfg = AnomalySettings(model="multivariate", warmup_frames=150, warmup_minutes=None)
    stage = AnomalyScores(AnomalyStage(overrides={"ready.m": cfg, "young.m": cfg}), TableStore("anomaly-models", {}))
    rng = np.random.default_rng(0)
    for asset, n in (("ready.m", 200), ("young.m", 40)):  # one past its warm-up, one far from it
        state = AssetState(asset, partition=0)
        for i in range(n):
            stage.apply_frame(state, frame(asset, i, rng), Step(now_us=i * S, emitted=[]))

    stats = RunStats("processor")
    stage.report(stats)
    snap = stats.snapshot()
    assert {s["labels"]["state"]: s["value"] for s in snap["levels"]["anomaly_models"]} == {
        "ready": 1,
        "warming_up": 1,
    }

    gauges = {
        tuple(sorted(s.labels.items())): s.value
        for m in RunStatsCollector(stats).collect()
        if m.name == "plantstream_anomaly_models"
        for s in m.samples
    }
    assert gauges == {
        (("component", "processor"), ("state", "ready")): 1.0,
        (("component", "processor"), ("state", "warming_up")): 1.0,
    }

    run = {**snap, "pid": os.getpid(), "updated": time.time()}
    cur = Sample(mono=0.0, bootstrap="b", partitions={}, messages={}, end_offsets={}, lag={}, runs={"processor": run})
    cur.wall = time.time()
    shown = view(None, cur, "ps")
    assert shown["stages"][0]["anomaly_models"] == {"ready": 1, "warming_up": 1}
    assert "processor: anomaly models 1 ready, 1 warming up" in render(shown)

    # the assets move to another worker: this one holds no model any more, and says so
    stage.revoked(["ready.m", "young.m"])
    stage.report(stats)
    assert stats.get("anomaly_models") == 0
