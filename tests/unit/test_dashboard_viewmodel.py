"""The dashboard's pure view model, token rules, the read API's OpenAPI document and downsampling SQL."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from pydantic import ValidationError

import schemas
from plantstream.core.config import DashboardSettings, Settings, load_config
from sinks.dashboard import auth, openapi, viewmodel
from sinks.dashboard.history import sqlite_history
from sinks.dashboard.ranges import nice_bucket_us
from sinks.stores.sqlite import SqliteStore
from tests.helpers import as_batch

US = 1_000_000


@pytest.fixture
def demo(clean_env: None) -> Settings:
    return load_config(None)


def test_asset_tree_nests_isa95_levels() -> None:
    tree = viewmodel.asset_tree(["e.s.a2.l1.m1", "e.s.a1.l1.m2", "e.s.a1.l1.m1"])
    assert [n["path"] for n in tree] == ["e"]
    site = tree[0]["children"][0]
    assert [a["name"] for a in site["children"]] == ["a1", "a2"]
    machines = site["children"][0]["children"][0]["children"]
    assert [m["path"] for m in machines] == ["e.s.a1.l1.m1", "e.s.a1.l1.m2"]
    assert machines[0]["children"] == []


def test_plant_view_of_demo_plant(demo: Settings) -> None:
    view = viewmodel.plant_view(demo)
    assert [a["path"] for a in view["assets"]] == [a.path for a in demo.plant.assets]
    assert set(view["assets"][0]) == {"path", "kind", "description"}  # tags come per asset: light at 1,000
    assert viewmodel.scan_intervals(demo)["demo.springfield.utilities.water.pump1"] == 0.5
    # counters and machine states are not trends: OEE, the state timeline and rates show them
    assert viewmodel.trend_tags(demo, "demo.springfield.stamping.line1.press1") == [
        "oil_temperature",
        "hydraulic_pressure",
        "motor_current",
    ]


def test_offline_after_n_scans_or_floor() -> None:
    cfg = DashboardSettings(offline_after_s=10, offline_after_scans=5)
    assert viewmodel.offline_after_s(cfg, 0.5) == 10  # 5 x 0.5 s is below the floor
    assert viewmodel.offline_after_s(cfg, 4.0) == 20
    assert viewmodel.offline_after_s(cfg, None) == 10
    now = 1_000 * US
    st = viewmodel.asset_status(
        cfg, {"a": 4.0, "b": 1.0}, {"a": now - 19 * US, "b": now - 11 * US}, ["a", "b", "c"], now
    )
    assert st["a"]["online"] and st["a"]["age_s"] == 19
    assert not st["b"]["online"]
    assert not st["c"]["online"] and st["c"]["age_s"] is None


def test_downsample_min_max_avg() -> None:
    rows = [(0, 1.0), (1 * US, 3.0), (2 * US, 5.0), (10 * US, -1.0), (11 * US, float("nan"))]
    got = viewmodel.downsample(rows, 0, 10 * US)
    assert got == {"t": [0, 10 * US], "min": [1.0, -1.0], "max": [5.0, -1.0], "avg": [3.0, -1.0]}


def test_sql_downsampling_equals_reference(tmp_path: Path) -> None:
    """The store's bucketed query gives what the reference gives on the same samples."""
    rnd = random.Random(3)
    store = SqliteStore(tmp_path / "s.db")
    start = 1_700_000_000 * US
    frames, ref = [], []
    for i in range(2000):
        t = start + i * 700_000 + rnd.randrange(1000)
        v = rnd.uniform(-5, 5)
        ref.append((t, v))
        frames.append(
            {
                "asset": "e.s.a.l.m",
                "device": "d",
                "seq": i,
                "producer_id": "p",
                "scan_time": t,
                "samples": [
                    {"tag": "x", "source_time": t, "value": v, "quality": "GOOD"},
                    {"tag": "other", "source_time": t, "value": 1e9, "quality": "GOOD"},
                ],
            }
        )
    store.write(as_batch(frames, []))
    store.close()
    hist = sqlite_history(tmp_path / "s.db")
    width = nice_bucket_us(2000 * 700_000, 50)
    got = hist.trends("e.s.a.l.m", ["x"], start, start + 2000 * 700_000, width)["x"]
    want = viewmodel.downsample(ref, start, width)
    assert got["t"] == want["t"] and got["min"] == want["min"] and got["max"] == want["max"]
    assert got["avg"] == pytest.approx(want["avg"])
    assert len(got["t"]) <= 50
    hist.close()


def test_history_of_missing_store_is_empty(tmp_path: Path) -> None:
    hist = sqlite_history(tmp_path / "absent.db")
    assert hist.trends("a", ["x"], 0, 10, 1) == {"x": {"t": [], "min": [], "max": [], "avg": []}}
    assert hist.open_alerts() == [] and hist.latest_oee() == [] and hist.last_seen(0) == {}


def test_frame_update_takes_newest_sample_per_tag() -> None:
    f = {
        "asset": "a",
        "scan_time": 5,
        "historical": False,
        "samples": [
            {"tag": "x", "source_time": 2, "value": 1.0, "quality": "GOOD"},
            {"tag": "x", "source_time": 4, "value": 2.0, "quality": "BAD"},
            {"tag": "y", "source_time": 3, "value": float("inf"), "quality": "GOOD"},
        ],
    }
    u = viewmodel.frame_update(f)
    assert u["values"] == {"x": 2.0, "y": None} and u["quality"]["x"] == "BAD" and u["time"] == 5


def _alert(aid: str, state: str, t: int, sev: str = "WARNING") -> dict[str, object]:
    return {
        "alert_id": aid,
        "asset": "a",
        "rule": "r",
        "kind": "threshold",
        "state": state,
        "severity": sev,
        "time": t,
        "message": "m",
        "tags": [],
        "value": 1.0,
    }


def test_alert_board_active_and_order() -> None:
    b = viewmodel.AlertBoard()
    assert b.apply(_alert("1", "RAISED", 10))
    assert b.apply(_alert("2", "RAISED", 20, "CRITICAL"))
    assert b.apply(_alert("3", "RAISED", 30))
    assert b.apply(_alert("3", "CLEARED", 40))
    assert not b.apply(_alert("3", "RAISED", 30))  # a late redelivery does not re-open it
    active = b.active({"1": {"acked_at": 1}})
    assert [a["alert_id"] for a in active] == ["2", "1"]  # unacknowledged and critical first
    assert active[1]["ack"] == {"acked_at": 1} and active[0]["ack"] is None


def test_downtime_pareto() -> None:
    got = viewmodel.downtime_by_reason([{"jam": 10, "setup": 5}, {"jam": 2.5, "idle": 0}, {"setup": 20}])
    assert got == [{"reason": "setup", "seconds": 25.0}, {"reason": "jam", "seconds": 12.5}]


def test_token_rules() -> None:
    assert not auth.token_ok(None, None) and not auth.token_ok(None, "x")
    assert not auth.token_ok("s3cret", None) and not auth.token_ok("s3cret", "wrong")
    assert auth.token_ok("s3cret", "s3cret")
    assert auth.presented_token({"Authorization": "Bearer abc"}, {auth.COOKIE: "c"}, {"token": "q"}) == "abc"
    assert auth.presented_token({}, {auth.COOKIE: "c"}, {"token": "q"}) == "q"
    assert auth.presented_token({}, {auth.COOKIE: "c"}, {}) == "c"
    assert auth.url_without_token("/", {"token": "x", "a": "1"}) == "/?a=1"


def test_openapi_document_is_valid_and_follows_the_avro_contracts() -> None:
    from openapi_spec_validator import validate

    doc = openapi.document()
    validate(doc)  # a valid OpenAPI 3.1 document
    comps = doc["components"]["schemas"]
    for name in (schemas.ASSET_STATE, schemas.ALARM_STATE, schemas.ALARM_EVENT):
        avro = schemas.schema_json(name)
        comp = comps[avro["name"]]
        assert list(comp["properties"]) == [f["name"] for f in avro["fields"]]
        assert comp["required"] == [f["name"] for f in avro["fields"] if "default" not in f]
    machine_state = comps["AssetState"]["properties"]["machine_state"]
    assert machine_state["anyOf"][1] == {"$ref": "#/components/schemas/MachineState"}


def test_dashboard_settings(clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANTSTREAM_PIPELINE__DASHBOARD__TOKEN", "tok-123")
    monkeypatch.setenv("PLANTSTREAM_PIPELINE__DASHBOARD__PORT", "9123")
    s = load_config(None)
    d = s.pipeline.dashboard
    assert d.port == 9123 and d.host == "127.0.0.1"
    assert d.token is not None and d.token.get_secret_value() == "tok-123"
    assert "tok-123" not in repr(s) and "tok-123" not in str(d)
    with pytest.raises(ValidationError, match="history_hours"):
        DashboardSettings(history_hours=0)


def test_merge_buckets_weights_by_count() -> None:
    got = viewmodel.merge_buckets(
        [(0, 1.0, 5.0, 3.0, 3), (2, 0.0, 0.0, 0.0, 0)], [(0, -1.0, 2.0, 1.0, 1), (1, 7.0, 8.0, 7.5, 2)]
    )
    assert got == [(0, -1.0, 5.0, 2.5), (1, 7.0, 8.0, 7.5)]


def test_kpi_windows_stand_in_for_covered_samples(tmp_path: Path) -> None:
    """Where 60 s KPI windows exist they are read instead of the samples; raw samples fill the open end."""
    store = SqliteStore(tmp_path / "s.db")
    start = 1_700_000_000 * US
    minute = 60 * US
    frames, kpis = [], []
    for m in range(30):  # 30 minutes of 1 s samples, KPI windows for the first 20
        vals = [float(m * 100 + s) for s in range(60)]
        for s, v in enumerate(vals):
            t = start + m * minute + s * US
            frames.append(
                {
                    "asset": "e.s.a.l.m",
                    "device": "d",
                    "seq": len(frames),
                    "producer_id": "p",
                    "scan_time": t,
                    "samples": [{"tag": "x", "source_time": t, "value": v, "quality": "GOOD"}],
                }
            )
        if m < 20:
            # a KPI window whose min differs from its samples' shows which source was read
            kpis.append(
                {
                    "asset": "e.s.a.l.m",
                    "tag": "x",
                    "window_start": start + m * minute,
                    "window_end": start + (m + 1) * minute,
                    "unit": "",
                    "count": 60,
                    "bad_count": 0,
                    "min": -1.0,
                    "max": max(vals),
                    "mean": sum(vals) / 60,
                    "stddev": 0.0,
                    "first": vals[0],
                    "last": vals[-1],
                    "first_time": None,
                    "last_time": None,
                    "time_weighted_avg": None,
                    "rate_of_change": None,
                }
            )
    store.write(as_batch(frames, kpis))
    store.close()
    hist = sqlite_history(tmp_path / "s.db")
    width = 5 * minute
    end = start + 30 * minute
    got = hist.trends("e.s.a.l.m", ["x"], start, end, width, kpi_window_us=minute)["x"]
    raw = hist.trends("e.s.a.l.m", ["x"], start, end, width)["x"]
    assert len(got["t"]) == len(raw["t"]) == 6
    assert got["min"][:4] == [-1.0] * 4 and got["min"][4:] == raw["min"][4:]  # windows, then raw samples
    assert got["max"] == raw["max"] and got["avg"] == pytest.approx(raw["avg"])
    narrow = hist.trends("e.s.a.l.m", ["x"], start, end, 30 * US, kpi_window_us=minute)["x"]
    assert -1.0 not in narrow["min"]  # buckets finer than a window: samples only
    hist.close()
