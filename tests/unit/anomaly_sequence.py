"""A deterministic frame sequence that takes the multivariate anomaly model through every path, and a digest of
what the model gives for it: the recorded reference that keeps its scores unchanged when its arithmetic is moved
(tests/unit/test_anomaly_recorded.py; `python -m tests.unit.anomaly_sequence` re-records it).

The sequence: a 20-tag synthetic machine (17 process values) with a warm-up, normal running, machine stops and
restarts, a spike, a correlated fault, a slow drift, a stuck sensor, a tag at exactly 0.0 that starts varying,
NaN/BAD samples, an alarm long enough to re-learn, and a checkpoint/restore through JSON half way. Small windows
so the drift references (every 1,200 judged frames) are taken within a few thousand frames.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from plantstream.core.config import AnomalySettings
from plantstream.simulators.synthetic import RUN, SyntheticPlant
from processors.anomaly.model import MultivariateModel

RECORDED = Path(__file__).parent / "data" / "anomaly_recorded.json.gz"
FRAMES = 6000
CFG = AnomalySettings(warmup_frames=300, window_frames=400, relearn_after_frames=600, stuck_frames=30)


def frames() -> Iterator[tuple[dict[str, Any], bool]]:
    """(frame, running) in order."""
    plant = SyntheticPlant(1, 20, 10.0, seed=7)
    rng = np.random.default_rng(11)
    for i in range(FRAMES):
        f: dict[str, Any] = dict(plant.frame(0, 1_700_000_000_000_000 + i * 100_000))
        samples = [dict(s) for s in f["samples"]]
        pv = {s["tag"]: s for s in samples}
        if 1500 <= i < 1503:
            pv["pv03"]["value"] *= 8.0  # spike
        if 2000 <= i < 2150:  # correlated fault: one goes up while its partner goes down
            pv["pv01"]["value"] *= 1.2
            pv["pv02"]["value"] *= 0.85
        if 2600 <= i < 3400:
            pv["pv05"]["value"] *= 1.0 + 0.3 * (i - 2600) / 800  # drift
        if 3600 <= i < 3700:
            pv["pv07"]["value"] = 123.25  # stuck
        if i < 3900:
            pv["pv09"]["value"] = 0.0  # constant at 0.0, then varies
        if 4200 <= i < 5000:
            pv["pv10"]["value"] *= 3.0  # lasting change: the model re-learns
        if i % 97 == 0:
            pv["pv11"]["value"] = math.nan
        if i % 89 == 0:
            pv["pv12"]["quality"] = "BAD"
        if rng.random() < 0.002:
            pv["pv13"]["value"] *= 50.0
        f["samples"] = samples
        running = plant.state_at(i) == RUN and not (5200 <= i < 5260)
        yield f, running


def run() -> dict[str, Any]:
    """The model's records for the sequence (checkpointed and restored half way) and its final state, digested."""
    model = MultivariateModel("m", CFG, [f"pv{k:02d}" for k in range(17)])
    digest = hashlib.sha256()
    scores: list[list[Any]] = []
    for i, (f, running) in enumerate(frames()):
        if i == FRAMES // 2:
            model = MultivariateModel.from_state(json.loads(json.dumps(model.to_state())))
        rec = model.update(f, running=running)
        digest.update(repr(rec).encode())
        if rec is not None:
            scores.append([rec["score"].hex(), rec["threshold"].hex(), rec["is_anomaly"], rec["warming_up"]])
    digest.update(json.dumps(model.to_state(), sort_keys=True).encode())
    return {"frames": FRAMES, "digest": digest.hexdigest(), "scores": scores}


if __name__ == "__main__":
    RECORDED.write_bytes(gzip.compress(json.dumps(run()).encode(), mtime=0))
    print(RECORDED)
