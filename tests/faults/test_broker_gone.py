"""Fault: the broker goes away under every long-running component (simulator + Modbus producer, worker,
storage sink, alert sink, dashboard). Their logs must not flood (a client retrying a dead broker logged
about ten lines per 100 ms: one line per condition per minute now), and SIGTERM must end each within a
bounded time although nothing can reach Kafka (what could not be committed is processed again next time,
what the producer could not send waits in its store-and-forward buffer).

The session's own broker is killed (SIGKILL) and started again afterwards, as in test_broker_kill.py."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from plantstream.core import runstats
from plantstream.core.config import Settings
from plantstream.stack import kafka
from tests.conftest import Stack, free_metrics_base, free_port, plant_raw, write_config
from tests.helpers import prepare_topics, spawn_cli, wait_for

pytestmark = pytest.mark.integration

OUTAGE_S = 30.0
SHUTDOWN_S = 8.0  # pipeline.shutdown_timeout_s
STOP_WITHIN_S = SHUTDOWN_S + 3  # every component, after SIGTERM with the broker gone
LINES_PER_OUTAGE = 40  # per component, over the whole outage
SAME_LINE = 4  # the same message (numbers aside) at most this often

COMPONENTS = {
    "simulator": ("simulate",),
    "producer": ("produce", "modbus"),
    "processor": ("process",),
    "sink-storage": ("sink", "storage"),
    "sink-alerts": ("sink", "alerts"),
    "dashboard": ("dashboard",),
}


def counts(settings: Settings, component: str) -> dict[str, int]:
    return dict(runstats.read_all(settings.pipeline.state_dir).get(component, {}).get("counts", {}))


def shape(line: str) -> str:
    """A log line without its time stamp and numbers: lines of one condition look alike."""
    line = re.sub(r"^\S+ \S+ ", "", line)  # "2026-12-07 19:20:53,123 WARNING ..." time stamp
    line = re.sub(r"^\[[^\]]*\] ", "", line)  # Faust's "[2026-12-07 19:20:53,123] [pid] [WARNING] ..."
    return re.sub(r"\d+", "#", line)[:120]


def test_broker_gone_components_log_little_and_stop_on_sigterm(stack: Stack, tmp_path: Path, clean_env: None) -> None:
    s = stack.launcher_settings
    if s is None:
        pytest.skip("needs the project's own broker to stop it")
    raw = plant_raw(
        tmp_path,
        stack,
        windows={"kpi_window_s": 5, "grace_s": 1},
        shutdown_timeout_s=SHUTDOWN_S,
        metrics={"base_port": free_metrics_base()},
        dashboard={"port": free_port()},
    )
    port = free_port()
    for d in raw["devices"]:
        d.update(port=port, poll_interval_s=0.25)
    settings = Settings(**raw)
    config = write_config(tmp_path, raw)
    prepare_topics(settings)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs = {name: tmp_path / f"{name}.log" for name in COMPONENTS}
    took: dict[str, float] = {}
    codes: dict[str, int | None] = {}
    during: dict[str, list[str]] = {}
    try:
        for name, args in COMPONENTS.items():
            procs[name] = spawn_cli(config, *args, log=logs[name])
        wait_for(
            lambda: (
                counts(settings, "processor").get("frames_in", 0) >= 20
                and counts(settings, "sink-storage").get("frames_stored", 0) >= 20
            ),
            120,
            what="frames through the producer, the worker and the storage sink",
        )
        before = {name: len(log.read_text(errors="replace").splitlines()) for name, log in logs.items()}
        pid = kafka.status(s).pid
        assert pid
        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)  # the session's broker is our child: reap it
        wait_for(lambda: not kafka.status(s).running, 15, 0.1, what="the killed broker to be gone")
        time.sleep(OUTAGE_S)
        for name, log in logs.items():
            during[name] = log.read_text(errors="replace").splitlines()[before[name] :]
        alive = {name for name, p in procs.items() if p.poll() is None}
        assert alive == set(COMPONENTS), f"died during the outage: {set(COMPONENTS) - alive}"
        stopped = time.monotonic()
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        # until every exit is recorded (the last ones to exit often go together, at the deadline)
        while time.monotonic() - stopped < STOP_WITHIN_S + 10 and len(took) < len(procs):
            for name, p in procs.items():
                if name not in took and p.poll() is not None:
                    took[name] = round(time.monotonic() - stopped, 1)
                    codes[name] = p.returncode
            time.sleep(0.1)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        kafka.start(s)  # leave the session's broker running for the tests after this one
    for name, lines in during.items():
        print(
            f"broker gone: {name}: {len(lines)} log lines in {OUTAGE_S:.0f} s; SIGTERM -> exit {codes.get(name)} "
            f"in {took.get(name)} s"
        )
    report = []
    for name, lines in during.items():
        common = Counter(shape(line) for line in lines if line.strip()).most_common(3)
        if len(lines) > LINES_PER_OUTAGE or (common and common[0][1] > SAME_LINE):
            report.append(f"{name}: {len(lines)} lines, most common {common}")
    assert not report, "\n".join(report)
    slow = {name: took.get(name) for name in COMPONENTS if took.get(name) is None or took[name] > STOP_WITHIN_S}
    assert not slow, f"did not stop within {STOP_WITHIN_S} s of SIGTERM: {slow}"
    bad = {name: c for name, c in codes.items() if c not in (0, 4)}  # 4: the stop deadline cut it short
    assert not bad, bad
