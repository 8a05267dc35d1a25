"""The dashboard's history queries give the same answers on PostgreSQL (timestamptz) as on SQLite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sinks.dashboard.history import SqlHistory, postgres_history, sqlite_history
from sinks.stores.postgres import PostgresStore
from sinks.stores.sqlite import SqliteStore
from tests.helpers import as_batch

pytestmark = pytest.mark.integration

US = 1_000_000
ASSET = "e.s.a.l.m"
START = 1_700_000_000 * US
MINUTE = 60 * US


def dataset() -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    frames, kpis = [], []
    for m in range(20):
        vals = [float((m * 37 + s * 11) % 50) for s in range(0, 60, 2)]
        for i, v in enumerate(vals):
            t = START + m * MINUTE + i * 2 * US
            frames.append(
                {
                    "asset": ASSET,
                    "device": "d",
                    "seq": len(frames),
                    "producer_id": "p",
                    "scan_time": t,
                    "historical": False,
                    "buffered": False,
                    "samples": [{"tag": "x", "source_time": t, "value": v, "quality": "GOOD"}],
                }
            )
        if m < 12:
            kpis.append(
                {
                    "asset": ASSET,
                    "tag": "x",
                    "window_start": START + m * MINUTE,
                    "window_end": START + (m + 1) * MINUTE,
                    "unit": "",
                    "count": len(vals),
                    "bad_count": 0,
                    "min": -1.0,
                    "max": max(vals),
                    "mean": sum(vals) / len(vals),
                    "stddev": 0.0,
                    "first": vals[0],
                    "last": vals[-1],
                    "first_time": None,
                    "last_time": None,
                    "time_weighted_avg": None,
                    "rate_of_change": None,
                }
            )
    scores = [
        {
            "asset": ASSET,
            "time": START + i * 10 * US,
            "model": "m",
            "score": (i % 9) / 10,
            "threshold": 0.7,
            "is_anomaly": i % 9 == 8,
            "warming_up": False,
            "contributions": {"x": 1.0},
        }
        for i in range(120)
    ]
    oee = [
        {
            "asset": ASSET,
            "window_start": START + w * 10 * MINUTE,
            "window_end": START + (w + 1) * 10 * MINUTE,
            "shift": "",
            "planned_busy_time_s": 600.0,
            "actual_production_time_s": 500.0,
            "produced_quantity": 10.0,
            "good_quantity": 9.0,
            "scrap_quantity": 1.0,
            "availability": 0.8 + w / 100,
            "effectiveness": 0.9,
            "quality_ratio": 0.9,
            "oee": 0.6 + w / 100,
            "scrap_ratio": 0.1,
            "failures": 1,
            "mtbf_s": 500.0,
            "mttr_s": 100.0,
            "downtime_by_reason_s": {"jam": 60.0 * (w + 1)},
        }
        for w in range(2)
    ]
    oee.append({**oee[0], "shift": "early", "window_end": START + 20 * MINUTE, "oee": 0.5})  # a closed shift
    alerts = [
        {
            "alert_id": "a1",
            "asset": ASSET,
            "rule": "r",
            "kind": "threshold",
            "state": "RAISED",
            "severity": "WARNING",
            "time": START + MINUTE,
            "message": "m",
            "tags": ["x"],
            "value": 1.5,
        },
        {
            "alert_id": "a2",
            "asset": ASSET,
            "rule": "r",
            "kind": "threshold",
            "state": "RAISED",
            "severity": "WARNING",
            "time": START + 2 * MINUTE,
            "message": "m",
            "tags": ["x"],
            "value": 2.5,
        },
        {
            "alert_id": "a2",
            "asset": ASSET,
            "rule": "r",
            "kind": "threshold",
            "state": "CLEARED",
            "severity": "WARNING",
            "time": START + 3 * MINUTE,
            "message": "m",
            "tags": ["x"],
            "value": None,
        },
    ]
    return frames, kpis, {"anomaly_score": scores, "oee_window": oee, "alert": alerts}


def answers(h: SqlHistory) -> dict[str, Any]:
    end = START + 20 * MINUTE
    return {
        "raw": h.trends(ASSET, ["x"], START, end, 5 * MINUTE),
        "kpi": h.trends(ASSET, ["x"], START, end, 5 * MINUTE, kpi_window_us=MINUTE),
        "anomaly": h.anomaly(ASSET, START, end, 5 * MINUTE),
        "oee": h.latest_oee(),
        "downtime": h.downtime(ASSET, START),
        "alerts": h.open_alerts(),
        "seen": h.last_seen(START),
        "start": h.data_start(ASSET, ["x"], START - MINUTE),
        "changes": h.state_changes(ASSET, "x", START + MINUTE, START + 5 * MINUTE, 3 * 1_000_000),
        "since": h.value_since(ASSET, "x", START + 5 * MINUTE, 3.0, 3600 * 1_000_000),
        "windows": h.oee_windows(ASSET, START, end, shifts=False),
        "shifts": h.oee_windows(ASSET, START, end, shifts=True),
    }


def test_postgres_history_equals_sqlite(pg_dsn: str, tmp_path: Path) -> None:
    frames, kpis, records = dataset()
    lite = SqliteStore(tmp_path / "s.db")
    lite.write(as_batch(frames, kpis, records))
    lite.close()
    pgs = PostgresStore(pg_dsn)
    pgs.write(as_batch(frames, kpis, records))
    pgs.close()
    a = sqlite_history(tmp_path / "s.db")
    b = postgres_history(pg_dsn, 5)
    try:
        want, got = answers(a), answers(b)
    finally:
        a.close()
        b.close()
    assert want["kpi"]["x"]["min"][:2] == [-1.0, -1.0]  # the windows were read where they exist
    assert len(want["raw"]["x"]["t"]) == 4 and want["alerts"][0]["alert_id"] == "a1"
    assert want["oee"][0]["oee"] == pytest.approx(0.61)
    for key in ("raw", "kpi"):
        for col in ("t", "min", "max", "avg"):
            assert got[key]["x"][col] == pytest.approx(want[key]["x"][col]), (key, col)
    assert want["start"] == START and len(want["changes"][0]) > 10 and want["since"] is not None
    assert [w["shift"] for w in want["windows"]] == ["", ""] and [w["shift"] for w in want["shifts"]] == ["early"]
    assert want["anomaly"]["warming"] == [False] * len(want["anomaly"]["t"])
    for key in ("anomaly", "downtime", "alerts", "seen", "start", "changes", "since", "windows", "shifts"):
        assert got[key] == want[key], key
    assert got["oee"] == want["oee"]  # doubles round-trip exactly in both
