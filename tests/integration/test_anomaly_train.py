"""`plantstream train` over the real broker: a model fitted on a replayed normal history goes to the worker's model
changelog, and the worker judges the asset from its first live frame (no warm-up), flagging a fault at once."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

import schemas
from plantstream.core import topics
from plantstream.core.config import Settings
from tests.conftest import Stack, plant_raw, write_config
from tests.helpers import consume_all, decoder, frame_codec, prepare_topics, produce, spawn_cli, stop

pytestmark = pytest.mark.integration

PUMP = "demo.springfield.utilities.water.pump1"
T0 = 1_767_225_600  # s
TAGS = ("flow", "discharge_pressure", "motor_current", "vibration_rms")


def pump_values(i: int, rng: random.Random, fault: bool) -> dict[str, float]:
    load = 0.8 + 0.15 * math.sin(i / 40)
    v = {
        "flow": 100 * load + rng.gauss(0, 0.5),
        "discharge_pressure": 4.0 * load**2 + rng.gauss(0, 0.02),
        "motor_current": 30 * load**3 + rng.gauss(0, 0.2),
        "vibration_rms": 2.0 + rng.gauss(0, 0.05),
    }
    if fault:  # clogged filter: pressure up while flow drops
        v["discharge_pressure"] += 0.8
        v["flow"] -= 15
    return v


def test_trained_model_reaches_the_worker_through_its_changelog(stack: Stack, tmp_path: Path, clean_env: None) -> None:
    rng = random.Random(7)
    history = tmp_path / "history.csv"
    lines = ["timestamp," + ",".join(TAGS)]
    for i in range(600):
        v = pump_values(i, rng, False)
        lines.append(f"{T0 + i}," + ",".join(f"{v[t]:.6f}" for t in TAGS))
    history.write_text("\n".join(lines) + "\n")
    raw = plant_raw(tmp_path, stack)
    raw["replay"] = [{"name": "normal", "path": str(history), "asset": PUMP, "timestamp_format": "epoch_s"}]
    settings = Settings(**raw)
    config = write_config(tmp_path, raw)
    prepare_topics(settings)

    out = subprocess.run(
        [sys.executable, "-m", "plantstream", "--config", str(config), "train", "--asset", PUMP, "--source", "normal"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["written_to"].endswith("-processor-anomaly-models-changelog") and summary["warmup_frames"] == 360

    live = []
    codec = frame_codec(settings)
    for i in range(300):
        t = (T0 + 600 + i) * 1_000_000
        values = pump_values(600 + i, rng, fault=i >= 200)
        live.append(
            {
                "asset": PUMP,
                "device": "pump1-vfd",
                "seq": i,
                "producer_id": "t",
                "scan_time": t,
                "historical": True,
                "buffered": False,
                "samples": [
                    {"tag": k, "source_time": t, "value": v, "quality": "GOOD", "unit": ""} for k, v in values.items()
                ],
            }
        )
    produce(settings, settings.topic(topics.READINGS), [(PUMP.encode(), codec.encode(f)) for f in live])
    worker = spawn_cli(config, "process", log=tmp_path / "worker.log")
    try:
        scores = consume_all(settings, settings.topic(topics.ANOMALIES), len(live), timeout=180)
    finally:
        assert stop(worker) == 0, (tmp_path / "worker.log").read_text()[-3000:]
    dec = decoder(settings, schemas.ANOMALY_SCORE)
    records = sorted((dec.decode(m.value()) for m in scores), key=lambda r: r["time"])
    assert len(records) == len(live)
    assert not any(r["warming_up"] for r in records), "the trained model was restored: no warm-up"
    assert not any(r["is_anomaly"] for r in records[:200])
    assert sum(r["is_anomaly"] for r in records[200:]) >= 80
