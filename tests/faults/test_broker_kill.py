"""Fault: the broker is killed with SIGKILL five times while `plantstream up` runs (more in soak mode).
Every frame Kafka acknowledged must be stored, once; the sequence numbers per device have no gap; the
stored KPI windows equal a recomputation from the readings topic; alert state changes are stored once."""

from __future__ import annotations

import contextlib
import json
import os
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
from tests.faults.checker import SOAK, check_run
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

KILLS = int(os.environ.get("PLANTSTREAM_FAULT_KILLS", "20" if SOAK else "5"))
FRAMES_BETWEEN_KILLS = 60 if SOAK else 12  # acked after each restart: proves the pipeline flows again
OUTAGE_S = 3.0 if SOAK else 0.5


def acked(state_dir: str) -> int:
    return int(runstats.read_all(state_dir).get("producer-modbus", {}).get("counts", {}).get("frames_acked", 0))


def log_tail(settings: Settings, component: str, chars: int = 3000) -> str:
    path = Path(settings.pipeline.state_dir) / "logs" / f"{component}.log"
    return path.read_text(errors="replace")[-chars:] if path.exists() else f"({path} missing)"


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
            [sys.executable, "-m", "plantstream", "--config", str(config), "up", "--duration", str(120 + 40 * KILLS)],
            stdout=o,
            stderr=e,
            stdin=subprocess.DEVNULL,
        )
    try:
        for i in range(KILLS + 1):
            before = acked(settings.pipeline.state_dir)
            wait_for(
                lambda b=before: acked(settings.pipeline.state_dir) >= b + FRAMES_BETWEEN_KILLS,
                90,
                what=f"frames acked after restart {i}" if i else "the first frames acked",
            )
            if i == KILLS:
                break
            pid = kafka.status(s).pid
            assert pid
            os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)  # the session's broker is our child: reap it, or it looks alive to start()
            wait_for(lambda: not kafka.status(s).running, 15, 0.1, what="the killed broker to be gone")
            time.sleep(OUTAGE_S)
            kafka.start(s)
        up.send_signal(signal.SIGTERM)  # stops the producer, then drains the processor and the sink
        assert up.wait(120) == 0, err.read_text()[-4000:]
    finally:
        if up.poll() is None:
            up.kill()
        kafka.start(s)  # leave the session's broker running for the tests after this one
    summary = json.loads(out.read_text().strip().splitlines()[-1])
    with sqlite3.connect(sqlite_path(settings)) as db:
        per_device = db.execute("SELECT device, COUNT(*), MIN(seq), MAX(seq) FROM frames GROUP BY device").fetchall()
    report = check_run(
        "broker-sigkill",
        settings,
        summary["frames_produced"],
        sqlite_path(settings),
        kpis=True,
        alerts=True,
        kills=KILLS,
        producer_acked=summary["frames_acked"],
        producer_failed=summary["frames_failed"],
        duration_s=summary["duration_s"],
    ).emit()
    report.assert_ok()
    assert summary["frames_failed"] == 0
    assert report.acked >= summary["frames_acked"] > 0  # the producer's own count agrees with the topic
    assert report.kpi is not None and report.kpi.got > 0, (
        "no KPI window was stored to compare; "
        f"processor counts {runstats.read_all(settings.pipeline.state_dir).get('processor', {}).get('counts')}; "
        f"processor log: {log_tail(settings, 'processor')}; sink log: {log_tail(settings, 'sink-storage')}"
    )
    for device, n, lo, hi in per_device:
        assert (lo, hi) == (0, n - 1), f"{device}: a gap in the stored sequence numbers"
