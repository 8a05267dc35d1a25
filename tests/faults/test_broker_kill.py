"""Fault: the broker is killed with SIGKILL three times while `plantstream up` runs. Every frame Kafka
acknowledged must be stored, once; the sequence numbers per device have no gap."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plantstream import runstats
from plantstream.config import Settings
from plantstream.stack import kafka
from sinks.storage import store_path
from tests.conftest import Stack, free_port, plant_raw, write_config
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

KILLS = int(os.environ.get("PLANTSTREAM_FAULT_KILLS", "3"))


def acked(state_dir: str) -> int:
    return int(runstats.read_all(state_dir).get("producer-modbus", {}).get("counts", {}).get("frames_acked", 0))


def test_broker_sigkill_loses_no_acked_frame(stack: Stack, tmp_path: Path, clean_env: None) -> None:
    s = stack.launcher_settings
    if s is None:
        pytest.skip("needs the project's own broker to kill it")
    raw = plant_raw(tmp_path, stack, windows={"kpi_window_s": 5, "grace_s": 1})
    port = free_port()
    for d in raw["devices"]:
        d.update(port=port, poll_interval_s=0.25)
    settings = Settings(**raw)
    config = write_config(tmp_path, raw)
    out, err = tmp_path / "up.out", tmp_path / "up.err"
    with open(out, "wb") as o, open(err, "wb") as e:
        up = subprocess.Popen(
            [sys.executable, "-m", "plantstream", "--config", str(config), "up", "--duration", str(30 + 15 * KILLS)],
            stdout=o,
            stderr=e,
            stdin=subprocess.DEVNULL,
        )
    try:
        for i in range(KILLS):
            wait_for(
                lambda n=i: acked(settings.pipeline.state_dir) >= 30 * (n + 1),
                90,
                what=f"frames acked before kill {i + 1}",
            )
            pid = kafka.status(s).pid
            assert pid
            os.kill(pid, signal.SIGKILL)
            time.sleep(3)
            kafka.start(s)
        assert up.wait(240) == 0, err.read_text()[-4000:]
    finally:
        if up.poll() is None:
            up.kill()
        kafka.start(s)  # leave the session's broker running for the tests after this one
    summary = json.loads(out.read_text().strip().splitlines()[-1])
    with sqlite3.connect(store_path(settings)) as db:
        stored = db.execute("SELECT COUNT(*) FROM frames").fetchone()[0]
        per_device = db.execute("SELECT device, COUNT(*), MIN(seq), MAX(seq) FROM frames GROUP BY device").fetchall()
    print(
        f"fault broker-sigkill: kills={KILLS} produced={summary['frames_produced']} acked={summary['frames_acked']} "
        f"stored={stored} lost={summary['frames_acked'] - stored} failed={summary['frames_failed']}"
    )
    assert summary["frames_failed"] == 0
    assert stored >= summary["frames_acked"] > 0  # acked is a subset of stored (keys make duplicates impossible)
    for device, n, lo, hi in per_device:
        assert (lo, hi) == (0, n - 1), f"{device}: a gap in the stored sequence numbers"
