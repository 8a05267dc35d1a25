"""The storage sink over the real broker: every record lands once, also across a kill -9."""

from __future__ import annotations

import re
import signal
import sqlite3
from pathlib import Path

import httpx
import pytest

import schemas
from plantstream.core import kafka_clients, topics
from plantstream.core.config import Settings
from sinks.stores.registry import sqlite_path
from tests.conftest import Stack, free_metrics_base, plant_raw, write_config
from tests.helpers import frame_codec, prepare_topics, produce, spawn_cli, stop, wait_for

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000_000
# the frames are 2026-01 history: retention 0 keeps them through the restart's retention pass
KEEP = {"samples_days": 0, "aggregates_days": 0}
ASSETS = [f"demo.springfield.area{i}.line1.m{i}" for i in range(4)]


def frames(start: int, n: int) -> list[dict]:
    return [
        {
            "asset": ASSETS[i % 4],
            "device": f"d{i % 4}",
            "seq": i,
            "producer_id": "sinktest",
            "scan_time": T0 + i * 1000,
            "historical": False,
            "buffered": False,
            "samples": [
                {"tag": f"t{k}", "source_time": T0 + i * 1000, "value": float(i + k), "quality": "GOOD", "unit": ""}
                for k in range(3)
            ],
        }
        for i in range(start, start + n)
    ]


def count(db: Path, sql: str) -> int:
    """A count from the sink's database; 0 while the sink has created the file but not yet its tables."""
    with sqlite3.connect(db) as c:
        try:
            return int(c.execute(sql).fetchone()[0])
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return 0
            raise


def test_sink_stores_each_record_once_across_kill(stack: Stack, tmp_path: Path, clean_env: None) -> None:
    metrics_base = free_metrics_base()
    raw = plant_raw(tmp_path, stack, storage={"batch_size": 50, "retention": KEEP}, metrics={"base_port": metrics_base})
    settings = Settings(**raw)
    config = write_config(tmp_path, raw)
    prepare_topics(settings)
    codec = frame_codec(settings)
    readings = settings.topic(topics.READINGS)
    produce(settings, readings, [(f["asset"].encode(), codec.encode(f)) for f in frames(0, 400)])
    kpi_codec = kafka_clients.registry(settings).codec(topics.subject(settings, topics.KPI), schemas.KPI_WINDOW)
    kpis = [
        {
            "asset": a,
            "tag": "t0",
            "window_start": T0,
            "window_end": T0 + 60_000_000,
            "unit": "",
            "count": 1,
            "bad_count": 0,
            "min": 1.0,
            "max": 1.0,
            "mean": 1.0,
            "stddev": 0.0,
            "first": 1.0,
            "last": 1.0,
            "first_time": T0,
            "last_time": T0,
            "time_weighted_avg": 1.0,
            "rate_of_change": None,
        }
        for a in ASSETS
    ]
    # each window twice: at-least-once upstream may emit a window again; the store keeps one row
    produce(settings, settings.topic(topics.KPI), [(k["asset"].encode(), kpi_codec.encode(k)) for k in kpis * 2])
    db = sqlite_path(settings)

    sink = spawn_cli(config, "sink", "storage", log=tmp_path / "sink.log")
    try:
        wait_for(lambda: db.exists() and count(db, "SELECT COUNT(*) FROM frames") >= 100, 60, what="first rows")
        # the same counters are on /metrics for Prometheus
        body = httpx.get(f"http://127.0.0.1:{metrics_base + 4}/metrics", timeout=5).text
        stored = float(re.search(r'^plantstream_frames_stored_total\{component="sink-storage"\} (\S+)$', body, re.M)[1])
        assert stored >= 100 and "process_resident_memory_bytes" in body
        sink.send_signal(signal.SIGKILL)  # mid-stream, no chance to commit or clean up
        sink.wait()
        produce(settings, readings, [(f["asset"].encode(), codec.encode(f)) for f in frames(400, 200)])
        sink = spawn_cli(config, "sink", "storage", log=tmp_path / "sink.log")
        wait_for(
            lambda: (
                count(db, "SELECT COUNT(*) FROM frames") >= 600 and count(db, "SELECT COUNT(*) FROM kpi_windows") >= 4
            ),
            60,
            what="all records stored",
        )
    finally:
        assert stop(sink) == 0, (tmp_path / "sink.log").read_text()[-3000:]
    assert count(db, "SELECT COUNT(*) FROM frames") == 600
    assert count(db, "SELECT COUNT(DISTINCT seq) FROM frames") == 600
    assert count(db, "SELECT COUNT(*) FROM samples") == 600 * 3
    assert count(db, "SELECT COUNT(*) FROM kpi_windows") == 4
    assert count(db, "SELECT SUM(value_num) FROM samples WHERE tag='t1'") == sum(i + 1 for i in range(600))
