"""The storage sink on PostgreSQL over the real broker: each record once across kill -9 and a DB outage."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from plantstream.core import topics
from plantstream.core.config import Settings
from plantstream.stack.postgres import LocalPostgres
from tests.conftest import Stack, plant_raw, write_config
from tests.helpers import frame_codec, prepare_topics, produce, spawn_cli, stop, wait_for
from tests.integration.test_sink_metrics import committed_total
from tests.integration.test_storage_sink import frames

pytestmark = pytest.mark.integration

SECRET = "s3cr3t-never-logged"


def count(dsn: str, sql: str) -> int:
    try:
        with psycopg.connect(dsn, connect_timeout=2) as c:
            row = c.execute(sql).fetchone()
            return int(row[0]) if row and row[0] is not None else 0
    except psycopg.OperationalError:
        return -1  # the server is down, or the sink has not migrated yet
    except psycopg.errors.UndefinedTable:
        return -1


def setup(stack: Stack, tmp_path: Path, dsn: str) -> tuple[Settings, Path, Any]:
    # the frames are 2026-01 history: retention 0 (keep forever); retention is tested in test_retention
    storage = {"batch_size": 50, "kind": "postgres", "postgres": {"dsn": dsn}, "retention": {"samples_days": 0}}
    raw = plant_raw(tmp_path, stack, storage=storage)
    settings = Settings(**raw)
    prepare_topics(settings)
    return settings, write_config(tmp_path, raw), frame_codec(settings)


def send(settings: Settings, codec: Any, start: int, n: int) -> None:
    fs = frames(start, n)
    produce(settings, settings.topic(topics.READINGS), [(f["asset"].encode(), codec.encode(f)) for f in fs])


def test_postgres_sink_stores_each_record_once_across_kill(
    stack: Stack, pg_dsn: str, tmp_path: Path, clean_env: None
) -> None:
    settings, config, codec = setup(stack, tmp_path, pg_dsn)
    send(settings, codec, 0, 400)
    env = {"PLANTSTREAM_PIPELINE__STORAGE__POSTGRES__PASSWORD": SECRET}
    log = tmp_path / "sink.log"
    sink = spawn_cli(config, "sink", "storage", log=log, env=env)
    try:
        wait_for(lambda: count(pg_dsn, "SELECT count(*) FROM frames") >= 100, 60, what="first rows")
        sink.send_signal(signal.SIGKILL)
        sink.wait()
        send(settings, codec, 400, 200)
        sink = spawn_cli(config, "sink", "storage", log=log, env=env)
        wait_for(lambda: count(pg_dsn, "SELECT count(*) FROM frames") >= 600, 60, what="all records stored")
    finally:
        assert stop(sink) == 0, log.read_text()[-3000:]
    assert count(pg_dsn, "SELECT count(*) FROM frames") == 600
    assert count(pg_dsn, "SELECT count(DISTINCT seq) FROM frames") == 600
    assert count(pg_dsn, "SELECT count(*) FROM samples") == 1800
    assert count(pg_dsn, "SELECT sum(value_num) FROM samples WHERE tag='t1'") == sum(i + 1 for i in range(600))
    assert SECRET not in log.read_text()


@pytest.fixture
def own_pg() -> Iterator[LocalPostgres]:
    """A server of this test's own, since the test stops and restarts it."""
    server = LocalPostgres()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.cleanup()


def test_postgres_down_applies_backpressure_and_loses_nothing(
    stack: Stack, own_pg: LocalPostgres, tmp_path: Path, clean_env: None
) -> None:
    dsn = own_pg.dsn(own_pg.new_database())
    settings, config, codec = setup(stack, tmp_path, dsn)
    send(settings, codec, 0, 300)
    log = tmp_path / "sink.log"
    sink = spawn_cli(config, "sink", "storage", log=log)
    try:
        wait_for(lambda: count(dsn, "SELECT count(*) FROM frames") >= 300, 60, what="first rows")
        own_pg.stop()
        send(settings, codec, 300, 300)
        wait_for(lambda: "is unreachable" in log.read_text(), 30, what="the outage logged")
        # the sink stays alive and keeps retrying instead of crashing or dropping the batch
        wait_for(lambda: log.read_text().count("still unreachable") >= 2, 30, what="retries")
        assert sink.poll() is None, log.read_text()[-3000:]
        # offsets only for what is stored: the 300 from before the outage, none of the unstored batch
        group = f"{settings.pipeline.group_id}-sink-storage"
        assert committed_total(settings, group, settings.topic(topics.READINGS)) == 300
        own_pg.start()
        wait_for(lambda: count(dsn, "SELECT count(*) FROM frames") >= 600, 90, what="the backlog stored")
    finally:
        assert stop(sink) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert f"127.0.0.1:{own_pg.port}" in text and "Fix:" in text and "Consuming paused" in text
    assert count(dsn, "SELECT count(*) FROM frames") == 600
    assert count(dsn, "SELECT count(DISTINCT seq) FROM frames") == 600
    assert count(dsn, "SELECT count(*) FROM samples") == 1800
    assert "Traceback" not in text  # one clear line per outage and retry, no crash loop
