"""A replayed CSV of N rows yields N frames in Kafka with the original timestamps, marked historical."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import schemas
from plantstream.core import topics
from plantstream.core.config import Settings
from tests.conftest import Stack, plant_raw, write_config
from tests.helpers import consume_all, decoder, prepare_topics

pytestmark = pytest.mark.integration

ASSET = "demo.springfield.utilities.water.pump1"
T0 = 1_735_689_600  # 2025-01-01T00:00:00Z
N = 1500


def test_csv_replay_yields_n_frames_with_original_times(stack: Stack, tmp_path: Path, clean_env: None) -> None:
    export = tmp_path / "historian.csv"
    with open(export, "w") as f:
        f.write("timestamp,FIC101.PV,PIC102.PV\n")
        for i in range(N):
            f.write(f"{T0 + 10 * i},{50 + i % 13},{3.5 + (i % 5) / 10}\n")
    raw = plant_raw(tmp_path, stack)
    raw["replay"] = [
        {
            "name": "pumps-2025",
            "path": str(export),
            "timestamp_format": "epoch_s",
            "asset": ASSET,
            "tags": {"FIC101.PV": "flow", "PIC102.PV": "discharge_pressure"},
            "units": {"flow": "m3/h", "discharge_pressure": "bar"},
        }
    ]
    settings = Settings(**raw)
    config = write_config(tmp_path, raw)
    prepare_topics(settings)
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP", "SCHEMA_REGISTRY_URL")}
    proc = subprocess.run(
        [sys.executable, "-m", "plantstream", "--config", str(config), "produce", "replay", "--speed", "max"],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["sources"][0]["rows"] == N and summary["frames_acked"] == N
    assert "replay pumps-2025" in proc.stderr and "1500/1500" in proc.stderr  # the progress bar

    dec = decoder(settings, schemas.READING_FRAME)
    frames = [dec.decode(m.value()) for m in consume_all(settings, settings.topic(topics.READINGS), N, timeout=60)]
    assert len(frames) == N
    assert [f["scan_time"] for f in frames] == [(T0 + 10 * i) * 1_000_000 for i in range(N)]  # one asset: in order
    assert all(f["historical"] and f["asset"] == ASSET for f in frames)
    assert frames[7]["samples"] == [
        {"tag": "flow", "source_time": (T0 + 70) * 1_000_000, "value": 57, "quality": "GOOD", "unit": "m3/h"},
        {
            "tag": "discharge_pressure",
            "source_time": (T0 + 70) * 1_000_000,
            "value": 3.7,
            "quality": "GOOD",
            "unit": "bar",
        },
    ]
