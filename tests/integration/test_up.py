"""`plantstream up` end to end: the demo pipeline over real sockets, a broker restart in the middle,
and every frame Kafka acknowledged found in SQLite exactly once."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plantstream.core import runstats
from plantstream.core.config import Settings
from plantstream.stack import kafka
from sinks.stores.registry import sqlite_path
from tests.conftest import Stack, free_port, plant_raw, write_config
from tests.helpers import wait_for

pytestmark = pytest.mark.integration


def acked(state_dir: str) -> int:
    snap = runstats.read_all(state_dir).get("producer-modbus", {})
    return int(snap.get("counts", {}).get("frames_acked", 0))


def test_up_survives_broker_restart_without_losing_acked_frames(stack: Stack, tmp_path: Path, clean_env: None) -> None:
    if stack.launcher_settings is None:
        pytest.skip("needs the project's own broker to restart it")
    raw = plant_raw(tmp_path, stack, windows={"kpi_window_s": 5, "grace_s": 1})
    port = free_port()
    for d in raw["devices"]:
        d.update(port=port, poll_interval_s=0.25)
    settings = Settings(**raw)
    config = write_config(tmp_path, raw)
    out, err = tmp_path / "up.out", tmp_path / "up.err"
    with open(out, "wb") as o, open(err, "wb") as e:
        up = subprocess.Popen(
            [sys.executable, "-m", "plantstream", "--config", str(config), "up", "--duration", "45"],
            stdout=o,
            stderr=e,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_for(lambda: acked(settings.pipeline.state_dir) >= 40, 60, what="frames acked before the restart")
        kafka.stop(stack.launcher_settings)
        time.sleep(5)  # the producer keeps polling; librdkafka holds the frames
        kafka.start(stack.launcher_settings)
        # a stage that dies is started again and resumes from its committed offsets
        pid = int(re.findall(r"processor: started \(pid (\d+)", err.read_text())[-1])
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: err.read_text().count("processor: started") == 2, 30, what="up to restart the processor")
        assert up.wait(150) == 0, err.read_text()[-4000:]
    finally:
        if up.poll() is None:
            up.kill()
    summary = json.loads(out.read_text().strip().splitlines()[-1])
    progress = err.read_text()
    assert "kafka: using configured broker" in progress and "stopping:" in progress
    assert "processor exited unexpectedly (code -9); restarting it (1 of 5)" in progress, progress[-3000:]

    assert summary["frames_failed"] == 0
    assert summary["frames_acked"] == summary["frames_produced"] > 100
    assert summary["dead_letters"] == 0
    assert summary["kpi_windows"] > 0

    with sqlite3.connect(sqlite_path(settings)) as db:
        stored = db.execute("SELECT COUNT(*) FROM frames").fetchone()[0]
        per_device = db.execute("SELECT device, COUNT(*), MIN(seq), MAX(seq) FROM frames GROUP BY device").fetchall()
        samples = db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
        kpis = db.execute("SELECT COUNT(*) FROM kpi_windows").fetchone()[0]
    # acked is a subset of stored (frames have natural keys, so stored cannot exceed distinct frames)
    assert stored == summary["frames_acked"] == summary["frames_stored"]
    assert len(per_device) == 4
    for device, n, lo, hi in per_device:
        assert (lo, hi) == (0, n - 1), f"{device}: a gap in the stored sequence numbers"
    assert samples == summary["samples_stored"] > 0
    assert 0 < kpis <= summary["kpi_windows"]  # a window re-emitted after a redelivery is stored once
