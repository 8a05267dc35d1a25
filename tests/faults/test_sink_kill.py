"""Fault: the storage sink is killed with SIGKILL mid-stream (no chance to commit offsets or close the
database) and restarted, while frames keep arriving. The store must end up holding exactly what the
readings topic holds: every acknowledged frame and sample, none twice."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from plantstream.core import topics
from plantstream.core.config import Settings
from sinks.stores.registry import sqlite_path
from tests.conftest import Stack, plant_raw, write_config
from tests.faults.checker import SOAK, check_run
from tests.faults.live import count
from tests.helpers import frame_codec, prepare_topics, produce, spawn_cli, stop, wait_for

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000_000
ASSETS = [f"demo.springfield.area{i}.line1.m{i}" for i in range(4)]
KILLS = 5 if SOAK else 1
BATCH = 400  # frames produced before each kill and after the last one
# 2026-01 history: retention 0 keeps it through the restarts' retention passes
KEEP = {"samples_days": 0, "aggregates_days": 0}


def frames(start: int, n: int) -> list[dict]:
    return [
        {
            "asset": ASSETS[i % 4],
            "device": f"d{i % 4}",
            "seq": i,
            "producer_id": "sinkkill",
            "scan_time": T0 + i * 1000,
            "historical": True,
            "buffered": False,
            "samples": [
                {"tag": f"t{k}", "source_time": T0 + i * 1000, "value": float(i + k), "quality": "GOOD", "unit": ""}
                for k in range(4)
            ],
        }
        for i in range(start, start + n)
    ]


def test_sink_sigkill_mid_stream_stores_each_acked_frame_once(stack: Stack, tmp_path: Path, clean_env: None) -> None:
    # small batches: a kill lands between a batch's commit to the store and its offset commit
    raw = plant_raw(tmp_path, stack, storage={"batch_size": 40, "retention": KEEP}, metrics={"enabled": False})
    settings = Settings(**raw)
    config = write_config(tmp_path, raw)
    prepare_topics(settings)
    codec = frame_codec(settings)
    readings = settings.topic(topics.READINGS)
    db = sqlite_path(settings)
    log = tmp_path / "sink.log"
    sent = 0

    def send(n: int) -> None:
        nonlocal sent
        produce(settings, readings, [(f["asset"].encode(), codec.encode(f)) for f in frames(sent, n)])
        sent += n

    send(BATCH)
    sink = spawn_cli(config, "sink", "storage", log=log)
    try:
        for i in range(KILLS):
            # kill while the sink is still behind the topic, i.e. mid-stream
            wait_for(
                lambda: count(settings, "SELECT COUNT(*) FROM frames") > sent - BATCH + 40,
                60,
                0.05,
                f"rows before kill {i + 1}",
            )
            sink.send_signal(signal.SIGKILL)
            sink.wait()
            send(BATCH)  # frames keep arriving while the sink is down
            sink = spawn_cli(config, "sink", "storage", log=log)
        wait_for(lambda: count(settings, "SELECT COUNT(*) FROM frames") >= sent, 60, what="every frame stored")
    finally:
        assert stop(sink) == 0, log.read_text()[-3000:]
    report = check_run("storage-sink-sigkill", settings, sent, db, kills=KILLS).emit()
    report.assert_ok()
    assert report.stored == report.acked == sent
