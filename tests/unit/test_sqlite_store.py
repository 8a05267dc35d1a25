"""SQLite store: natural keys make redelivery a no-op; migrations are versioned."""

from __future__ import annotations

from pathlib import Path

from sinks.stores.sqlite import MIGRATIONS, SqliteStore
from tests.helpers import as_batch


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
    assert store.write(as_batch(frames(10), [kpi(1.0)])) == {"frames": 10, "samples": 30, "kpi_windows": 1}
    # a batch replayed after a crash, overlapping the stored one
    again = store.write(as_batch(frames(15), [kpi(1.0)]))
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


def result_records(t0: int = 0) -> dict[str, list[dict]]:
    """One OEE window, anomaly score and alert, as the processors emit them (times offset by t0 µs)."""
    oee = {
        "asset": "a.b.c.d.e",
        "window_start": t0,
        "window_end": t0 + 60_000_000,
        "shift": "early",
        "planned_busy_time_s": 60.0,
        "actual_production_time_s": 45.0,
        "produced_quantity": 19.0,
        "good_quantity": 18.0,
        "scrap_quantity": 1.0,
        "availability": 0.75,
        "effectiveness": 0.84,
        "quality_ratio": 0.947,
        "oee": 0.6,
        "scrap_ratio": 0.05,
        "failures": 1,
        "mtbf_s": 45.0,
        "mttr_s": 10.0,
        "downtime_by_reason_s": {"jam": 10.0},
    }
    score = {
        "asset": "a.b.c.d.e",
        "time": t0 + 5,
        "model": "pca-t2-spe/1",
        "score": 3.2,
        "threshold": 2.0,
        "is_anomaly": True,
        "warming_up": False,
        "contributions": {"flow": 0.7, "pressure": 0.3},
    }
    alert = {
        "alert_id": "x1",
        "asset": "a.b.c.d.e",
        "rule": "hot",
        "kind": "threshold",
        "state": "RAISED",
        "severity": "CRITICAL",
        "time": t0 + 7,
        "message": "too hot",
        "tags": ["temp"],
        "value": 80.0,
    }
    return {"oee_window": [oee], "anomaly_score": [score], "alert": [alert]}


def test_other_results_are_stored_once(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    records = result_records()
    assert store.write(as_batch([], [], records)) == {
        "frames": 0,
        "samples": 0,
        "kpi_windows": 0,
        "oee_window": 1,
        "anomaly_score": 1,
        "alert": 1,
    }
    assert store.write(as_batch([], [], records))["alert"] == 0  # a redelivery changes nothing
    assert [store.count(t) for t in ("oee_windows", "anomaly_scores", "alerts")] == [1, 1, 1]
    row = store.db.execute("SELECT oee, downtime_by_reason_s FROM oee_windows").fetchone()
    assert row == (0.6, '{"jam": 10.0}')
    assert store.db.execute("SELECT tags, state FROM alerts").fetchone() == ('["temp"]', "RAISED")


def revised(rec: dict, revision: int, **changes: object) -> dict:
    return {**rec, **changes, "revision": revision}


def test_a_correction_replaces_the_first_result_and_older_revisions_change_nothing(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    oee = result_records()["oee_window"][0]
    store.write(as_batch([], [revised(kpi(1.0), 0)], {"oee_window": [revised(oee, 0, data_coverage=0.5)]}))
    # the correction after late data: revision 1 replaces revision 0
    store.write(as_batch([], [revised(kpi(2.0), 1)], {"oee_window": [revised(oee, 1, oee=0.7, data_coverage=1.0)]}))
    # a redelivered revision 0, and a batch holding both revisions (the newest wins either way)
    store.write(as_batch([], [revised(kpi(1.0), 0)], {"oee_window": [revised(oee, 0)]}))
    store.write(as_batch([], [revised(kpi(3.0), 2), revised(kpi(1.5), 0)], {}))
    assert store.db.execute("SELECT mean, revision FROM kpi_windows").fetchall() == [(3.0, 2)]
    assert store.db.execute("SELECT oee, revision, data_coverage FROM oee_windows").fetchall() == [(0.7, 1, 1.0)]


def test_alarm_events_are_stored_once(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    event = {
        "event_id": "e1",
        "alarm": "a.b.c.d.e/hot",
        "asset": "a.b.c.d.e",
        "rule": "hot",
        "time": 5,
        "event": "ACKNOWLEDGED",
        "from_state": "UNACK",
        "to_state": "ACKED",
        "user": "alice",
        "comment": "on it",
        "command_id": "c1",
        "reason": "",
        "alert_id": "x1",
        "severity": "CRITICAL",
    }
    assert store.write(as_batch([], [], {"alarm_event": [event]}))["alarm_event"] == 1
    assert store.write(as_batch([], [], {"alarm_event": [event]}))["alarm_event"] == 0
    assert store.db.execute("SELECT user, to_state FROM alarm_events").fetchone() == ("alice", "ACKED")


def _float_frames(n: int) -> list[dict]:
    return [
        {
            **f,
            "samples": [
                {**s, "value": float(i) * 1.5, "quality": q}
                for s, q in zip(f["samples"], ("GOOD", "UNCERTAIN", "BAD"), strict=True)
            ],
        }
        for i, f in enumerate(frames(n))
    ]


def test_frames_as_columns_store_the_same_rows_as_frames_as_dicts(tmp_path: Path) -> None:
    import io

    import fastavro

    import schemas
    from plantstream.core.frame_codec import ColumnarDecoder, FrameColumns
    from plantstream.core.serde import parse_internal

    parsed = parse_internal(schemas.schema_json(schemas.READING_FRAME))
    dec = ColumnarDecoder()
    as_columns: list = []
    for f in _float_frames(5):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, f)
        body = buf.getvalue()
        cols = dec.decode(body)
        if cols is None:
            dec.learn(body, fastavro.schemaless_reader(io.BytesIO(body), parsed, None))
            cols = dec.decode(body)
        as_columns.append(cols)
    assert all(isinstance(c, FrameColumns) for c in as_columns)
    a, b = SqliteStore(tmp_path / "dicts.db"), SqliteStore(tmp_path / "columns.db")
    expected = {"frames": 5, "samples": 15, "kpi_windows": 0}
    assert a.write(as_batch(_float_frames(5))) == b.write(as_batch(as_columns)) == expected
    for table in ("frames", "samples"):
        q = f"SELECT * FROM {table} ORDER BY 1, 2, 3"
        assert a.db.execute(q).fetchall() == b.db.execute(q).fetchall()
    assert b.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: a commit survives a power cut
