"""Retention on both stores: rows older than their table's retention vanish, younger rows stay."""

from __future__ import annotations

from pathlib import Path

import pytest

from plantstream.core.config import RetentionSettings
from sinks.stores import sqlite
from sinks.stores.postgres import DAY_US, PostgresStore
from sinks.stores.sqlite import SqliteStore
from tests.helpers import as_batch
from tests.unit.test_postgres_store import T0, shifted
from tests.unit.test_sqlite_store import frames, kpi

NOW = T0 + 400 * DAY_US


def window(start_us: int) -> dict:
    return {**kpi(1.0), "window_start": start_us, "window_end": start_us + 60_000_000}


def load(store: SqliteStore | PostgresStore) -> None:
    store.write(as_batch(shifted(frames(4, "old"), NOW - 45 * DAY_US), [window(NOW - 800 * DAY_US)]))
    store.write(as_batch(shifted(frames(6, "young"), NOW - 2 * DAY_US), [window(NOW - 100 * DAY_US)]))


def test_sqlite_deletes_expired_rows_in_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite, "RETENTION_BATCH", 2)  # several bounded batches per table and series
    store = SqliteStore(tmp_path / "r.db")
    load(store)
    deleted = store.apply_retention(RetentionSettings(), now_us=NOW)
    assert deleted == {"samples": 12, "frames": 4, "kpi_windows": 1}
    assert store.count("samples") == 18 and store.count("frames") == 6 and store.count("kpi_windows") == 1
    assert store.db.execute("SELECT DISTINCT producer_id FROM frames").fetchall() == [("young",)]
    assert store.apply_retention(RetentionSettings(), now_us=NOW) == {"samples": 0, "frames": 0, "kpi_windows": 0}


def test_sqlite_frames_own_retention_and_zero_keeps_forever(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "r.db")
    load(store)
    deleted = store.apply_retention(RetentionSettings(samples_days=0, frames_days=60, aggregates_days=0), now_us=NOW)
    assert deleted == {"frames": 0}
    deleted = store.apply_retention(RetentionSettings(samples_days=0, frames_days=40, aggregates_days=0), now_us=NOW)
    assert deleted == {"frames": 4} and store.count("samples") == 30


def test_postgres_drops_expired_partitions(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn)
    load(store)
    dropped = store.apply_retention(RetentionSettings(), now_us=NOW)
    assert dropped["samples"] == 1 and dropped["frames"] == 1 and dropped["kpi_windows"] == 1
    assert store.count("samples") == 18 and store.count("frames") == 6 and store.count("kpi_windows") == 1
    assert len(store.partitions("samples")) == 1
