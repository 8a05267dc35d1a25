"""The sinks' /metrics over real sockets, and the storage sink's backpressure on a locked SQLite file.

Storage sink (a real process against the real broker): consumer lag per topic as a gauge, store write
latency quantiles; the SQLite file locked by another program (an open sqlite3 shell, a backup) longer
than the busy timeout pauses consumption with a clear log line, commits nothing it has not stored, shows
the backlog as lag (also in `plantstream status`), and resumes without loss or duplicates.
Alert sink: consumer lag, failed delivery attempts and deliveries given up.
"""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition

from plantstream import status
from plantstream.core import kafka_clients, topics
from plantstream.core.config import Settings
from sinks.stores.registry import sqlite_path
from tests.conftest import Stack, free_metrics_base, plant_raw, write_config
from tests.helpers import frame_codec, prepare_topics, produce, spawn_cli, stop, wait_for
from tests.integration.test_alert_delivery import alert, produce_alerts
from tests.integration.test_storage_sink import KEEP, count, frames
from tests.servers import HttpReceiver

pytestmark = pytest.mark.integration


def scrape(port: int) -> str:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return ""


def value(body: str, name: str, **labels: str) -> float | None:
    """One sample of the exposition text; labels must match exactly those given (plus any others)."""
    for m in re.finditer(rf"^{name}\{{([^}}]*)\}} (\S+)$", body, re.M):
        got = dict(re.findall(r'(\w+)="([^"]*)"', m[1]))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(m[2])
    return None


def type_of(body: str, name: str) -> str | None:
    m = re.search(rf"^# TYPE {name} (\w+)$", body, re.M)
    return m[1] if m else None


def committed_total(settings: Settings, group: str, topic: str) -> int:
    c = Consumer(kafka_clients.consumer_config(settings, group, "test-offsets"))
    try:
        parts = [TopicPartition(topic, p) for p in range(settings.pipeline.kafka.partitions)]
        return sum(max(0, tp.offset) for tp in c.committed(parts, timeout=10))
    finally:
        c.close()


def test_storage_sink_lag_and_latency_metrics_and_a_locked_sqlite_file(
    stack: Stack, tmp_path: Path, clean_env: None
) -> None:
    base = free_metrics_base()
    raw = plant_raw(tmp_path, stack, storage={"batch_size": 50, "retention": KEEP}, metrics={"base_port": base})
    settings = Settings(**raw)
    config = write_config(tmp_path, raw)
    prepare_topics(settings)
    codec = frame_codec(settings)
    readings = settings.topic(topics.READINGS)
    group = f"{settings.pipeline.group_id}-sink-storage"
    db = sqlite_path(settings)
    port = base + 4
    log = tmp_path / "sink.log"

    def send(start: int, n: int) -> None:
        produce(settings, readings, [(f["asset"].encode(), codec.encode(f)) for f in frames(start, n)])

    def lag(body: str) -> float | None:
        return value(body, "plantstream_consumer_lag_records", component="sink-storage", topic=readings)

    send(0, 300)
    sink = spawn_cli(config, "sink", "storage", log=log)
    other: sqlite3.Connection | None = None
    try:
        wait_for(lambda: db.exists() and count(db, "SELECT COUNT(*) FROM frames") == 300, 30, what="first 300 rows")
        wait_for(lambda: lag(scrape(port)) == 0, 10, what="lag 0 once caught up")
        body = scrape(port)
        assert type_of(body, "plantstream_consumer_lag_records") == "gauge"
        assert type_of(body, "plantstream_frames_stored_total") == "counter"  # counters keep their names
        assert value(body, "plantstream_frames_stored_total", component="sink-storage") == 300
        assert (value(body, "plantstream_store_batch_ms", quantile="0.5") or 0) > 0
        assert value(body, "plantstream_store_paused") == 0
        # every topic the sink reads has its series, also the quiet ones
        assert lag(body) == 0 and value(body, "plantstream_consumer_lag_records", topic=settings.topic(topics.KPI)) == 0

        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")  # another program holds the write lock, beyond the 5 s busy timeout
        locked_at = time.monotonic()
        send(300, 300)
        wait_for(lambda: "is locked by another connection" in log.read_text(), 15, 0.2, "the outage logged")
        wait_for(lambda: (lag(scrape(port)) or 0) > 0, 5, 0.2, "lag > 0 while paused")
        body = scrape(port)
        assert value(body, "plantstream_store_paused") == 1
        assert sink.poll() is None, log.read_text()[-3000:]  # paused, not crashed
        # nothing unstored is committed: the group's offsets cover exactly the 300 stored records
        assert committed_total(settings, group, readings) == 300 == count(db, "SELECT COUNT(*) FROM frames")
        groups = {g["group"]: g["lag"] for g in status.collect(settings, rate_window_s=0.1)["groups"]}
        assert groups[group][readings] == 300  # `plantstream status` shows the backlog for the group
        time.sleep(max(0.0, 6.5 - (time.monotonic() - locked_at)))
        other.execute("ROLLBACK")
        other.close()
        other = None
        wait_for(lambda: count(db, "SELECT COUNT(*) FROM frames") == 600, 20, 0.2, "the backlog stored")
        wait_for(lambda: lag(scrape(port)) == 0, 10, 0.2, "lag back to 0")
        body = scrape(port)
        assert value(body, "plantstream_store_paused") == 0
        assert value(body, "plantstream_store_outages_total") == 1
        wait_for(lambda: committed_total(settings, group, readings) == 600, 10, what="offsets after the backlog")
    finally:
        if other is not None:
            other.close()
        assert stop(sink) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert f"SQLite database {db} is locked" in text and "Fix:" in text and "Consuming paused" in text
    assert "consuming resumed" in text and "Traceback" not in text
    assert count(db, "SELECT COUNT(*) FROM frames") == 600
    assert count(db, "SELECT COUNT(DISTINCT seq) FROM frames") == 600
    assert count(db, "SELECT COUNT(*) FROM samples") == 1800


def test_alert_sink_metrics_lag_and_delivery_failures(stack: Stack, tmp_path: Path, clean_env: None) -> None:
    http = HttpReceiver()
    http.plan["flaky"] = [500, 500]  # two failed tries, then accepted
    http.plan["down"] = [500] * 10  # given up after max_attempts
    base = free_metrics_base()
    channels: list[dict[str, Any]] = [
        {"kind": "webhook", "name": "flaky", "url": http.url("flaky"), "timeout_s": 2},
        {"kind": "webhook", "name": "down", "url": http.url("down"), "timeout_s": 2},
    ]
    raw = plant_raw(
        tmp_path,
        stack,
        alerting={"channels": channels, "retry": {"initial_s": 0.1, "max_s": 0.2, "max_attempts": 3}},
        metrics={"base_port": base},
    )
    settings = Settings(**raw)
    prepare_topics(settings)
    produce_alerts(settings, alert("inc-9", "RAISED"))
    port = base + 5
    log = tmp_path / "sink.log"
    sink = spawn_cli(write_config(tmp_path, raw), "sink", "alerts", log=log)
    try:

        def done() -> bool:
            b = scrape(port)
            return (
                value(b, "plantstream_deliveries_sent_total") == 1
                and value(b, "plantstream_deliveries_failed_total") == 1
            )

        wait_for(done, 30, 0.2, "one delivery through, one given up")
        topic = settings.topic(topics.ALERTS)
        wait_for(
            lambda: value(scrape(port), "plantstream_consumer_lag_records", component="sink-alerts", topic=topic) == 0,
            10,
            0.2,
            "the alert sink's lag",
        )
        body = scrape(port)
        assert type_of(body, "plantstream_consumer_lag_records") == "gauge"
        # flaky: 2 failed tries; down: 3 failed tries, the last one given up
        assert value(body, "plantstream_delivery_attempts_failed_total") == 5
        assert value(body, "plantstream_deliveries_retried_total") == 4
        assert (value(body, "plantstream_delivery_send_ms", quantile="1") or 0) > 0
    finally:
        assert stop(sink) == 0, log.read_text()[-3000:]
        http.close()
    assert len(http.got("flaky")) == 1 and len(http.got("down")) == 0
