"""SQLite failures that pass (locked by another program, disk full) become StoreUnavailable with the fix,
the batch stays whole (nothing half written) and succeeds as is once the condition is gone."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import sinks.stores.sqlite
from sinks.stores.base import StoreUnavailable
from sinks.stores.sqlite import SqliteStore, unavailable_reason
from tests.helpers import as_batch
from tests.unit.test_sqlite_store import frames
from tests.unit.tmpfs import small_disk  # noqa: F401  (fixture)


def test_locked_by_another_program_then_released(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sinks.stores.sqlite, "BUSY_TIMEOUT_S", 0.2)
    db = tmp_path / "plant.db"
    store = SqliteStore(db)
    store.write(as_batch(frames(10), []))
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # e.g. an sqlite3 shell with an open write transaction
    try:
        with pytest.raises(StoreUnavailable) as e:
            store.write(as_batch(frames(20), []))
        assert str(db) in str(e.value) and "locked" in str(e.value) and "Fix:" in str(e.value)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert store.write(as_batch(frames(20), [])) == {"frames": 10, "samples": 30, "kpi_windows": 0}
    assert store.count("frames") == 20 and store.count("samples") == 60
    store.close()


def test_disk_full_then_freed(small_disk: Path) -> None:  # noqa: F811
    db = small_disk / "plant.db"
    store = SqliteStore(db)
    filler = small_disk / "filler"
    with open(filler, "wb", buffering=0) as f:  # the rest of the disk, taken by something else (logs, a core dump)
        try:
            while f.write(b"\0" * 4096):
                pass
        except OSError:
            pass  # ENOSPC: the disk is full
    with pytest.raises(StoreUnavailable) as e:
        store.write(as_batch(frames(2000), []))
    assert "disk is full" in str(e.value) and "Fix:" in str(e.value) and str(small_disk) in str(e.value)
    filler.unlink()
    assert store.write(as_batch(frames(2000), []))["frames"] == 2000  # the whole batch, nothing half written before
    assert store.count("frames") == 2000
    store.close()


def test_errors_retrying_cannot_fix_are_not_hidden(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "plant.db")
    try:
        with pytest.raises(sqlite3.OperationalError):
            store.db.execute("SELECT * FROM no_such_table")
        assert unavailable_reason(tmp_path / "plant.db", sqlite3.OperationalError("no such table: x")) is None
    finally:
        store.close()
