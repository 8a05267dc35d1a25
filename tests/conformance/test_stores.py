"""Conformance checks run on every storage backend registered in sinks/stores/registry.py (BACKENDS),
each over its real database (a SQLite file; the test PostgreSQL server).

What any Store must do: write a Batch in one transaction and say how many rows each table got; keep
the natural keys so a redelivered batch inserts nothing; store every record kind of the contract;
apply retention by age only; count rows; close cleanly.
A new backend that is added to BACKENDS is checked by these tests without any change here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plantstream.core.config import RetentionSettings, Settings
from plantstream.core.records import reading_frame, sample
from plantstream.stack.postgres import LocalPostgres
from sinks.batch import Batch
from sinks.stores.base import Store
from sinks.stores.registry import BACKENDS, open_store
from tests.conftest import plant_raw

DAY_US = 86_400_000_000
NOW = (time.time_ns() // 1000) // DAY_US * DAY_US  # today, midnight UTC


def settings_for(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    raw = plant_raw(tmp_path)
    storage: dict[str, Any] = {"kind": kind}
    if kind == "postgres":
        pg: LocalPostgres = request.getfixturevalue("pg")
        storage["postgres"] = {"dsn": pg.dsn(pg.new_database())}
    raw["pipeline"]["storage"] = storage
    return Settings(**raw)


@pytest.fixture(params=sorted(BACKENDS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s = open_store(settings_for(request.param, tmp_path, request))
    try:
        yield s
    finally:
        s.close()


def frames(n: int, t0: int, producer: str = "p1") -> list[Any]:
    return [
        reading_frame(
            asset="acme.site.area.line.m1",
            device="d1",
            seq=i,
            producer_id=producer,
            scan_time=t0 + i * 1_000_000,
            samples=[
                sample("temp", t0 + i * 1_000_000, 20.0 + i, unit="degC"),
                sample("state", t0 + i * 1_000_000, "RUNNING", "UNCERTAIN"),
                sample("count", t0 + i * 1_000_000, i),
                sample("lost", t0 + i * 1_000_000, None, "BAD"),
            ],
        )
        for i in range(n)
    ]


def kpi(start: int) -> Any:
    return {
        "asset": "acme.site.area.line.m1",
        "tag": "temp",
        "window_start": start,
        "window_end": start + 60_000_000,
        "unit": "degC",
        "count": 3,
        "bad_count": 0,
        "min": 20.0,
        "max": 22.0,
        "mean": 21.0,
        "stddev": 1.0,
        "first": 20.0,
        "last": 22.0,
        "first_time": start,
        "last_time": start + 2_000_000,
        "time_weighted_avg": 21.0,
        "rate_of_change": 1.0,
    }


def results(t: int) -> Batch:
    b = Batch()
    b.oee_windows.append(
        {
            "asset": "acme.site.area.line.m1",
            "window_start": t,
            "window_end": t + 3_600_000_000,
            "shift": "early",
            "planned_busy_time_s": 3600.0,
            "actual_production_time_s": 3000.0,
            "produced_quantity": 100.0,
            "good_quantity": 95.0,
            "scrap_quantity": 5.0,
            "availability": 0.83,
            "effectiveness": 0.9,
            "quality_ratio": 0.95,
            "oee": 0.71,
            "scrap_ratio": 0.05,
            "failures": 1,
            "mtbf_s": 3000.0,
            "mttr_s": 600.0,
            "downtime_by_reason_s": {"jam": 600.0},
        }
    )
    b.anomaly_scores.append(
        {
            "asset": "acme.site.area.line.m1",
            "time": t,
            "model": "multivariate",
            "score": 3.5,
            "threshold": 2.0,
            "is_anomaly": True,
            "warming_up": False,
            "contributions": {"temp": 0.8},
        }
    )
    b.alerts.append(
        {
            "alert_id": "a1",
            "asset": "acme.site.area.line.m1",
            "rule": "hot",
            "kind": "threshold",
            "state": "RAISED",
            "severity": "WARNING",
            "time": t,
            "message": "too hot",
            "tags": ["temp"],
            "value": 90.0,
        }
    )
    b.alarm_events.append(
        {
            "event_id": "e1",
            "alarm": "acme.site.area.line.m1/hot",
            "asset": "acme.site.area.line.m1",
            "rule": "hot",
            "time": t,
            "event": "ACKNOWLEDGED",
            "from_state": "UNACK",
            "to_state": "ACKED",
            "user": "ann",
            "comment": "on it",
            "command_id": "c1",
            "reason": "",
            "alert_id": "a1",
            "severity": "WARNING",
        }
    )
    return b


def test_a_batch_is_written_with_the_rows_each_table_got(store: Store) -> None:
    written = store.write(Batch(frames=frames(5, NOW), kpi_windows=[kpi(NOW)]))
    assert written == {"frames": 5, "samples": 20, "kpi_windows": 1}
    assert (store.count("frames"), store.count("samples"), store.count("kpi_windows")) == (5, 20, 1)


def test_a_redelivered_batch_inserts_nothing(store: Store) -> None:
    batch = Batch(frames=frames(5, NOW), kpi_windows=[kpi(NOW)])
    store.write(batch)
    assert store.write(batch) == {"frames": 0, "samples": 0, "kpi_windows": 0}
    # an overlapping batch adds only what is new
    assert store.write(Batch(frames=frames(8, NOW)))["frames"] == 3
    assert store.count("samples") == 32


def test_every_result_kind_is_stored_once(store: Store) -> None:
    written = store.write(results(NOW))
    assert written == {
        "frames": 0,
        "samples": 0,
        "kpi_windows": 0,
        "oee_window": 1,
        "anomaly_score": 1,
        "alert": 1,
        "alarm_event": 1,
    }
    again = store.write(results(NOW))
    assert (again["oee_window"], again["anomaly_score"], again["alert"], again["alarm_event"]) == (0, 0, 0, 0)
    assert [store.count(t) for t in ("oee_windows", "anomaly_scores", "alerts", "alarm_events")] == [1, 1, 1, 1]


def test_the_newest_revision_of_a_window_stands(store: Store) -> None:
    first = results(NOW).oee_windows[0]
    store.write(Batch(kpi_windows=[{**kpi(NOW), "revision": 0}], oee_windows=[{**first, "revision": 0}]))
    corrected = Batch(
        kpi_windows=[{**kpi(NOW), "mean": 25.0, "revision": 1}],
        oee_windows=[{**first, "oee": 0.8, "revision": 1, "data_coverage": 1.0}],
    )
    assert store.write(corrected)["kpi_windows"] == 1  # the correction replaces the first result
    assert store.write(Batch(kpi_windows=[{**kpi(NOW), "revision": 0}]))["kpi_windows"] == 0  # an older one: no
    assert store.count("kpi_windows") == 1 and store.count("oee_windows") == 1


def test_an_empty_batch_changes_nothing(store: Store) -> None:
    assert store.write(Batch()) == {"frames": 0, "samples": 0, "kpi_windows": 0}
    assert store.count("frames") == 0


def test_retention_removes_only_what_is_older_than_its_days(store: Store) -> None:
    store.write(Batch(frames=frames(3, NOW - 60 * DAY_US, "old")))
    store.write(Batch(frames=frames(2, NOW - DAY_US, "young")))
    store.apply_retention(RetentionSettings(samples_days=30, frames_days=30), now_us=NOW)
    assert store.count("frames") == 2 and store.count("samples") == 8
    store.apply_retention(RetentionSettings(samples_days=30, frames_days=30), now_us=NOW)  # idempotent
    assert store.count("frames") == 2


def test_close_twice_is_harmless(store: Store) -> None:
    store.write(Batch(frames=frames(1, NOW)))
    store.close()
    store.close()
