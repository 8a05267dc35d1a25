"""Anomaly scores and anomaly alerts from the worker over the real broker."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

import schemas
from plantstream.core import runstats, topics
from plantstream.core.config import Settings
from tests.conftest import Stack, plant_raw, write_config
from tests.helpers import consume_all, decoder, frame_codec, prepare_topics, produce, spawn_cli, stop, wait_for

pytestmark = pytest.mark.integration

PUMP = "demo.springfield.utilities.water.pump1"
T0 = 1_767_225_600_000_000
NORMAL, FAULT = 500, 80


def pump_frames() -> list[dict]:
    rng = random.Random(5)
    frames = []
    for i in range(NORMAL + FAULT):
        t = T0 + i * 1_000_000
        load = 0.8 + 0.15 * math.sin(i / 40)
        flow = 100 * load + rng.gauss(0, 0.5)
        pressure = 4.0 * load**2 + rng.gauss(0, 0.02)
        current = 30 * load**3 + rng.gauss(0, 0.2)
        vibration = 2.0 + rng.gauss(0, 0.05)
        if i >= NORMAL:  # clogged filter: pressure up while flow drops, a broken correlation
            pressure += 0.8
            flow -= 15
        values = {"flow": flow, "discharge_pressure": pressure, "motor_current": current, "vibration_rms": vibration}
        frames.append(
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
    return frames


def test_anomaly_scores_and_alert(stack: Stack, tmp_path: Path, clean_env: None) -> None:
    raw = plant_raw(tmp_path, stack)
    pump = next(a for a in raw["plant"]["assets"] if a["path"] == PUMP)
    pump["anomaly"] = {"warmup_frames": 200, "debounce_frames": 3}
    settings = Settings(**raw)
    config = write_config(tmp_path, raw)
    prepare_topics(settings)
    codec = frame_codec(settings)
    frames = pump_frames()
    produce(settings, settings.topic(topics.READINGS), [(PUMP.encode(), codec.encode(f)) for f in frames])
    worker = spawn_cli(config, "process", log=tmp_path / "worker.log")
    try:
        scores = consume_all(settings, settings.topic(topics.ANOMALIES), len(frames), timeout=90)
        alerts = consume_all(settings, settings.topic(topics.ALERTS), 1, timeout=30)

        def models() -> dict[str, int]:
            levels = runstats.read_all(settings.pipeline.state_dir).get("processor", {}).get("levels", {})
            return {s["labels"]["state"]: s["value"] for s in levels.get("anomaly_models", [])}

        # the worker's run file (and so its metrics and `plantstream status`) says the pump's model is ready
        wait_for(
            lambda: models() == {"ready": 1, "warming_up": 0},
            10,
            what="the anomaly_models level to show the pump model ready",
        )
    finally:
        assert stop(worker) == 0, (tmp_path / "worker.log").read_text()[-3000:]
    dec = decoder(settings, schemas.ANOMALY_SCORE)
    records = sorted((dec.decode(m.value()) for m in scores), key=lambda r: r["time"])
    assert len(records) == len(frames)  # one score per frame, not per sample
    assert all(r["warming_up"] for r in records[:150])
    normal = records[300:NORMAL]
    fault = records[NORMAL + 10 :]
    assert sum(r["is_anomaly"] for r in normal) <= 3
    assert sum(r["is_anomaly"] for r in fault) >= len(fault) // 2
    top = max(fault[-1]["contributions"].items(), key=lambda kv: kv[1])[0]
    assert top in ("flow", "discharge_pressure")
    adec = decoder(settings, schemas.ALERT)
    raised = [adec.decode(m.value()) for m in alerts]
    assert any(a["rule"] == "pump-anomaly" and a["state"] == "RAISED" and a["kind"] == "anomaly" for a in raised)


def test_a_tag_stuck_at_zero_neither_stalls_the_worker_nor_makes_nan(
    stack: Stack, tmp_path: Path, clean_env: None
) -> None:
    # issue 15's crash: two noisy signals and one tag reading exactly 0.0 from the first frame, warm-up 100 frames;
    # the worker used to raise LinAlgError on every frame after warm-up and score NaN
    raw = plant_raw(tmp_path, stack)
    pump = next(a for a in raw["plant"]["assets"] if a["path"] == PUMP)
    pump["anomaly"] = {"model": "multivariate", "tags": ["flow", "motor_current", "valve"], "warmup_frames": 100}
    settings = Settings(**raw)
    config = write_config(tmp_path, raw)
    prepare_topics(settings)
    rng = random.Random(3)
    frames = []
    for i in range(400):
        t = T0 + i * 1_000_000
        flow = 100 + rng.gauss(0, 1)
        values = {"flow": flow, "motor_current": 0.3 * flow + rng.gauss(0, 0.2) + (6.0 if i >= 300 else 0.0)}
        values["valve"] = 0.0
        frames.append(
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
    codec = frame_codec(settings)
    produce(settings, settings.topic(topics.READINGS), [(PUMP.encode(), codec.encode(f)) for f in frames])
    worker = spawn_cli(config, "process", log=tmp_path / "worker.log")
    try:
        scores = consume_all(settings, settings.topic(topics.ANOMALIES), len(frames), timeout=180)
    finally:
        assert stop(worker) == 0, (tmp_path / "worker.log").read_text()[-3000:]
    dec = decoder(settings, schemas.ANOMALY_SCORE)
    records = sorted((dec.decode(m.value()) for m in scores), key=lambda r: r["time"])
    assert len(records) == len(frames)  # every frame scored: none lost to a crashing agent
    assert all(math.isfinite(r["score"]) and math.isfinite(r["threshold"]) for r in records)
    assert not any(r["is_anomaly"] for r in records[:300])
    assert any(r["is_anomaly"] for r in records[300:])  # the live signals still detect a broken relation
    assert all("valve" not in r["contributions"] for r in records)
    log = (tmp_path / "worker.log").read_text()
    assert "LinAlgError" not in log and "left out of the anomaly model" in log
