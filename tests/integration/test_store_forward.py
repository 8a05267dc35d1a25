"""Broker down while producing: frames wait on disk, survive a kill -9 of the producer, and reach Kafka
once each, in order per asset, marked as buffered, when the broker returns."""

from __future__ import annotations

import os
import signal
import time
from collections import defaultdict
from pathlib import Path

import pytest

import schemas
from plantstream.core import runstats, topics
from plantstream.core.config import Settings
from plantstream.stack import kafka
from producers.device_events import OutageTracker
from producers.readers.base import now_us
from producers.service import event_publisher
from tests.conftest import Stack, free_port, plant_raw, write_config
from tests.helpers import consume_all, decoder, prepare_topics, spawn_cli, stop, wait_for

pytestmark = pytest.mark.integration

# the issue asks for a 60 s outage; PLANTSTREAM_TEST_OUTAGE_S shortens it for quick local runs
OUTAGE_S = float(os.environ.get("PLANTSTREAM_TEST_OUTAGE_S", "60"))


def counts(state_dir: str) -> dict[str, int]:
    return dict(runstats.read_all(state_dir).get("producer-modbus", {}).get("counts", {}))


def test_outage_kill_restart_loses_nothing(stack: Stack, tmp_path: Path, clean_env: None) -> None:
    if stack.launcher_settings is None:
        pytest.skip("needs the project's own broker to stop it")
    raw = plant_raw(tmp_path, stack)
    port = free_port()
    for d in raw["devices"]:
        d.update(port=port, poll_interval_s=0.25)
    settings = Settings(**raw)
    config = write_config(tmp_path, raw)
    prepare_topics(settings)
    state = settings.pipeline.state_dir
    sim = spawn_cli(config, "simulate", log=tmp_path / "sim.log")
    first = spawn_cli(config, "produce", "modbus", log=tmp_path / "producer1.log")
    second = None
    try:
        wait_for(lambda: counts(state).get("frames_acked", 0) >= 20, 60, what="frames acked before the outage")
        kafka.stop(stack.launcher_settings)
        outage_started = time.time()
        time.sleep(OUTAGE_S / 2)
        assert counts(state).get("buffer_frames", 0) > 0, "frames must wait on disk during the outage"
        first.send_signal(signal.SIGKILL)  # no flush, no goodbye
        first.wait()
        second = spawn_cli(config, "produce", "modbus", log=tmp_path / "producer2.log")
        time.sleep(OUTAGE_S / 2)
        kafka.start(stack.launcher_settings)
        recovered = time.time()
        wait_for(
            lambda: counts(state).get("buffer_frames", 1) == 0 and counts(state).get("frames_acked", 0) > 0,
            120,
            what="the buffer drained after recovery",
        )
        time.sleep(2)
    finally:
        if second is not None:
            assert stop(second) == 0, (tmp_path / "producer2.log").read_text()[-3000:]
        stop(sim)
        if first.poll() is None:
            first.kill()

    log2 = (tmp_path / "producer2.log").read_text()
    assert "from an earlier run wait in" in log2 and "Kafka answers again" in log2
    dec = decoder(settings, schemas.READING_FRAME)
    msgs = consume_all(settings, settings.topic(topics.READINGS), expect=10**9, timeout=20)
    frames = [dec.decode(m.value()) for m in msgs]
    by_run: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    partition_order: dict[tuple[str, str], list[int]] = defaultdict(list)
    for _m, f in zip(msgs, frames, strict=True):
        by_run[f["producer_id"]][f["device"]].append(f)
        partition_order[(f["producer_id"], f["device"])].append(f["seq"])
    assert len(by_run) == 2, "frames of both producer runs reach Kafka"
    for pid, devices in by_run.items():
        assert len(devices) == 4
        for device, fs in devices.items():
            seqs = partition_order[(pid, device)]
            assert seqs == list(range(len(seqs))), f"{pid}/{device}: lost, duplicated or reordered frames"
            for f in fs:
                t = f["scan_time"] / 1e6
                if outage_started + 3 < t < recovered - 1:
                    assert f["buffered"], f"{device} seq {f['seq']} waited on disk but is not marked buffered"
    run1 = next(
        p for p, d in by_run.items() if min(f["scan_time"] for fs in d.values() for f in fs) / 1e6 < outage_started
    )
    run1_last = max(f["scan_time"] for fs in by_run[run1].values() for f in fs) / 1e6
    assert run1_last > outage_started + OUTAGE_S / 2 - 2, "run 1's frames from the outage survived its kill -9"


def test_a_device_event_raised_while_kafka_is_down_arrives_after_it_returns(
    stack: Stack, tmp_path: Path, clean_env: None
) -> None:
    """Device-down alerts go through the store-and-forward buffer too: a CLEARED produced during a broker
    outage, by a producer that then stops before the broker is back, is delivered by the next run."""
    if stack.launcher_settings is None:
        pytest.skip("needs the project's own broker to stop it")
    settings = Settings(**plant_raw(tmp_path, stack))
    prepare_topics(settings)
    tracker = OutageTracker("press1-plc", settings.devices[0].asset, ["temperature"])
    raised = tracker.observe(False, now_us(), "cannot connect")
    assert raised is not None
    first = event_publisher(settings, "producer-ev")
    first.emit(raised)
    wait_for(lambda: not len(first._producer), 30, what="the RAISED acknowledged")
    kafka.stop(stack.launcher_settings)
    try:
        time.sleep(3)
        cleared = tracker.observe(True, now_us())
        assert cleared is not None
        first.emit(cleared)
        assert first.close(timeout=5) == 0  # nothing lost: the CLEARED waits on disk
    finally:
        kafka.start(stack.launcher_settings)
    second = event_publisher(settings, "producer-ev")  # the next run of the producer, same buffer file
    try:
        dec = decoder(settings, schemas.ALERT)
        got = [dec.decode(m.value()) for m in consume_all(settings, settings.topic(topics.ALERTS), 2, timeout=60)]
    finally:
        second.close(timeout=10)
    assert [a["state"] for a in got] == ["RAISED", "CLEARED"], got
    assert got[0]["alert_id"] == got[1]["alert_id"] and got[1] == cleared
