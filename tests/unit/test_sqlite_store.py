"""SQLite store: natural keys make redelivery a no-op; migrations are versioned."""

from __future__ import annotations

from pathlib import Path

from sinks.sqlite_store import MIGRATIONS, SqliteStore


def frames(n: int, producer: str = "p1") -> list[dict]:
    return [
        {
            "producer_id": producer,
            "device": "d",
            "seq": i,
            "asset": "a.b.c.d.e",
            "scan_time": i * 1000,
            "historical": False,
            "buffered": False,
            "samples": [
                {"tag": "t", "source_time": i * 1000, "value": float(i), "quality": "GOOD", "unit": ""},
                {"tag": "s", "source_time": i * 1000, "value": "on", "quality": "UNCERTAIN", "unit": ""},
                {"tag": "b", "source_time": i * 1000, "value": None, "quality": "BAD", "unit": ""},
            ],
        }
        for i in range(n)
    ]


def kpi(mean: float) -> dict:
    return {
        "asset": "a.b.c.d.e",
        "tag": "t",
        "window_start": 0,
        "window_end": 60,
        "unit": "",
        "count": 3,
        "bad_count": 0,
        "min": 0.0,
        "max": 2.0,
        "mean": mean,
        "stddev": 1.0,
        "first": 0.0,
        "last": 2.0,
        "first_time": 0,
        "last_time": 2,
        "time_weighted_avg": 1.0,
        "rate_of_change": 1.0,
    }


def test_redelivery_inserts_nothing(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    assert store.write(frames(10), [kpi(1.0)]) == {"frames": 10, "samples": 30, "kpi_windows": 1}
    # a batch replayed after a crash, overlapping the stored one
    again = store.write(frames(15), [kpi(1.0)])
    assert again["frames"] == 5 and again["samples"] == 15
    assert store.count("frames") == 15 and store.count("samples") == 45 and store.count("kpi_windows") == 1
    rows = store.db.execute(
        "SELECT value_num, value_text, quality FROM samples WHERE ts = 2000 ORDER BY tag"
    ).fetchall()
    assert rows == [(None, None, 2), (None, "on", 1), (2.0, None, 0)]
    view = store.db.execute("SELECT time, value, quality FROM samples_readable WHERE tag='t' AND ts=0").fetchone()
    assert view == ("1970-01-01T00:00:00.000Z", 0.0, "GOOD")


def test_migrations_run_once(tmp_path: Path) -> None:
    SqliteStore(tmp_path / "s.db").close()
    store = SqliteStore(tmp_path / "s.db")  # reopening must not re-run migration 1
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
