"""PostgresStore against a real PostgreSQL server: natural keys, partitions, retention, migrations, COPY."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import psycopg
import pytest
from pydantic import SecretStr

from plantstream.core.config import RetentionSettings
from sinks.stores.postgres import DAY_US, MIGRATIONS, PostgresStore, period_bounds, period_of
from tests.helpers import as_batch
from tests.unit.test_sqlite_store import frames, kpi, result_records

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z


def shifted(fs: list[dict], by_us: int) -> list[dict]:
    out = []
    for f in fs:
        g = {**f, "scan_time": f["scan_time"] + by_us}
        g["samples"] = [{**s, "source_time": s["source_time"] + by_us} for s in f["samples"]]
        out.append(g)
    return out


def test_period_names_and_bounds() -> None:
    assert period_of(T0 + DAY_US - 1, "day") == "20260101"
    assert period_of(T0 + DAY_US, "day") == "20260102"
    assert period_of(T0 - 1, "month") == "202512"
    start, end = period_bounds("202512")
    assert (start.month, end.year, end.month) == (12, 2026, 1)


def test_redelivery_inserts_nothing_and_values_round_trip(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn)
    batch = shifted(frames(10), T0)
    assert store.write(as_batch(batch, [kpi(1.0)])) == {"frames": 10, "samples": 30, "kpi_windows": 1}
    again = store.write(as_batch(shifted(frames(15), T0), [kpi(1.0)]))
    assert again == {"frames": 5, "samples": 15, "kpi_windows": 0}
    assert (store.count("frames"), store.count("samples"), store.count("kpi_windows")) == (15, 45, 1)
    with psycopg.connect(pg_dsn) as c:
        rows = c.execute(
            "SELECT value_num, value_text, quality, extract(epoch FROM ts)::numeric * 1000000 FROM samples "
            "WHERE ts = timestamptz 'epoch' + %s * interval '1 microsecond' ORDER BY tag",
            (T0 + 2000,),
        ).fetchall()
    assert [r[:3] for r in rows] == [(None, None, 2), (None, "on", 1), (2.0, None, 0)]
    assert {int(r[3]) for r in rows} == {T0 + 2000}  # microseconds survive the timestamptz conversion
    store.close()


def test_partitions_created_per_day_and_month(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn)
    store.write(as_batch(shifted(frames(2), T0) + shifted(frames(2, "p2"), T0 + 3 * DAY_US), [kpi(1.0)]))
    assert store.partitions("samples") == ["samples_p20260101", "samples_p20260104"]
    assert store.partitions("frames") == ["frames_p20260101", "frames_p20260104"]
    assert store.partitions("kpi_windows") == ["kpi_windows_p197001"]


def test_retention_drops_old_partitions_keeps_young(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn)
    now = T0 + 40 * DAY_US
    store.write(as_batch(shifted(frames(3), T0), []))  # 40 days old
    store.write(as_batch(shifted(frames(3, "p2"), now - DAY_US), []))  # 1 day old
    store.write_records(
        "alert",
        [
            {
                "alert_id": "a1",
                "asset": "a.b.c.d.e",
                "rule": "r",
                "kind": "threshold",
                "state": "RAISED",
                "severity": "WARNING",
                "time": T0,
                "message": "hot",
                "tags": ["t"],
                "value": 9.0,
            }
        ],
    )
    dropped = store.apply_retention(RetentionSettings(samples_days=30), now_us=now)
    assert dropped["samples"] == 1 and dropped["frames"] == 1 and dropped["alerts"] == 0
    assert store.count("samples") == 9 and store.count("frames") == 3 and store.count("alerts") == 1
    with psycopg.connect(pg_dsn) as c:
        assert c.execute("SELECT DISTINCT producer_id FROM frames").fetchall() == [("p2",)]
    # a late frame for an expired day comes back in a new partition instead of failing
    assert store.write(as_batch(shifted(frames(1, "late"), T0), []))["samples"] == 3


def test_migrations_idempotent_and_safe_concurrently(pg_dsn: str) -> None:
    stores: list[PostgresStore] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            stores.append(PostgresStore(pg_dsn))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=open_one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(stores) == 3
    assert sorted(v for s in stores for v in s.migrated_now) == [v for v, _, _ in MIGRATIONS]
    again = PostgresStore(pg_dsn)
    assert again.migrated_now == [] and again.migrations() == [v for v, _, _ in MIGRATIONS]


def test_other_record_kinds(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn)
    oee = {
        "asset": "a.b.c.d.e",
        "window_start": T0,
        "window_end": T0 + 3600_000_000,
        "shift": "",
        "planned_busy_time_s": 3600.0,
        "actual_production_time_s": 3000.0,
        "produced_quantity": 100.0,
        "good_quantity": 95.0,
        "scrap_quantity": 5.0,
        "availability": 0.83,
        "effectiveness": None,
        "quality_ratio": 0.95,
        "oee": None,
        "scrap_ratio": 0.05,
        "failures": 1,
        "mtbf_s": 3000.0,
        "mttr_s": 600.0,
        "downtime_by_reason_s": {"jam": 600.0},
    }
    score = {
        "asset": "a.b.c.d.e",
        "time": T0,
        "model": "hotelling-t2/1",
        "score": 3.0,
        "threshold": 2.0,
        "is_anomaly": True,
        "warming_up": False,
        "contributions": {"t": 1.0},
    }
    assert store.write_records("oee_window", [oee, oee]) == 1
    assert store.write_records("anomaly_score", [score]) == 1
    assert store.write_records("anomaly_score", [score]) == 0
    with psycopg.connect(pg_dsn) as c:
        assert c.execute("SELECT downtime_by_reason_s->>'jam' FROM oee_windows").fetchone() == ("600.0",)


def test_copy_of_10k_samples(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn)
    batch = [
        {
            "producer_id": "p",
            "device": "d",
            "seq": i,
            "asset": "a.b.c.d.e",
            "scan_time": T0 + i * 1000,
            "historical": False,
            "buffered": False,
            "samples": [
                {"tag": f"t{k}", "source_time": T0 + i * 1000, "value": float(k), "quality": "GOOD", "unit": ""}
                for k in range(40)
            ],
        }
        for i in range(250)
    ]
    assert store.write(as_batch(batch, []))["samples"] == 10_000
    assert store.write(as_batch(batch, []))["samples"] == 0
    assert store.count("samples") == 10_000


def test_password_from_env_never_in_repr(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from plantstream.core.config import Settings
    from sinks.stores.postgres import conninfo, where
    from tests.conftest import plant_raw

    for name in list(os.environ):
        if name.startswith("PLANTSTREAM_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PLANTSTREAM_PIPELINE__STORAGE__POSTGRES__PASSWORD", "hunter2")
    monkeypatch.setenv("PLANTSTREAM_PIPELINE__STORAGE__POSTGRES__PORT", "6543")
    s = Settings(**plant_raw(tmp_path, storage={"kind": "postgres"}))
    pg = s.pipeline.storage.postgres
    assert "hunter2" not in repr(s) and "hunter2" in conninfo(pg)
    assert where(conninfo(pg)) == "127.0.0.1:6543/plantstream"
    dsn = pg.model_copy(update={"dsn": SecretStr("postgresql://u@db.example:5433/x")})
    assert where(conninfo(dsn)) == "db.example:5433/x" and "hunter2" in conninfo(dsn)


def test_other_results_in_the_same_batch(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn)
    both = result_records(T0)
    records = {"oee_window": both["oee_window"], "alert": both["alert"]}
    written = store.write(as_batch(shifted(frames(2), T0), [], records))
    assert (written["frames"], written["oee_window"], written["alert"]) == (2, 1, 1)
    assert store.write(as_batch([], [], records)) == {
        "frames": 0,
        "samples": 0,
        "kpi_windows": 0,
        "oee_window": 0,
        "alert": 0,
    }
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT oee, downtime_by_reason_s->>'jam' FROM oee_windows").fetchone() == (0.6, "10.0")
    store.close()


def test_a_correction_replaces_the_first_result(pg_dsn: str) -> None:
    from tests.unit.test_sqlite_store import revised

    store = PostgresStore(pg_dsn)
    oee = {**result_records()["oee_window"][0], "window_start": T0, "window_end": T0 + 60_000_000}
    store.write(as_batch([], [revised(kpi(1.0), 0)], {"oee_window": [revised(oee, 0, data_coverage=0.5)]}))
    store.write(as_batch([], [revised(kpi(2.0), 1)], {"oee_window": [revised(oee, 1, oee=0.7, data_coverage=1.0)]}))
    store.write(as_batch([], [revised(kpi(1.0), 0)], {"oee_window": [revised(oee, 0)]}))  # a redelivered first result
    store.write(as_batch([], [revised(kpi(3.0), 2), revised(kpi(1.5), 0)], {}))  # both in one batch: one row per key
    with psycopg.connect(pg_dsn) as c:
        assert c.execute("SELECT mean, revision FROM kpi_windows").fetchall() == [(3.0, 2)]
        assert c.execute("SELECT oee, revision, data_coverage FROM oee_windows").fetchall() == [(0.7, 1, 1.0)]
    store.close()
