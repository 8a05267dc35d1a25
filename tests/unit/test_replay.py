"""Historian exports to frames: wide and long, CSV and Parquet, time formats and zones, clear errors."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from plantstream.core.config import ReplaySource, Settings
from processors.anomaly.model import feature_tags
from producers.replay import (
    ReplayError,
    check_source,
    count_rows,
    frames_from_batches,
    quality_of,
    read_batches,
    replay,
)

ASSET = "demo.springfield.utilities.water.pump1"
T = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z


def frames(src: ReplaySource) -> list[dict]:
    return list(frames_from_batches(src, read_batches(src, batch_rows=3), "test"))


def test_wide_csv_one_frame_per_row(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text(
        "time;flow;pressure;note\n2026-01-01T00:00:00Z;10.5;4;ok\n2026-01-01T00:00:01Z;;4.1;\n"
        "2026-01-01T00:00:02+01:00;11;4.2;x\n"
    )
    src = ReplaySource(
        name="w",
        path=str(path),
        delimiter=";",
        timestamp_column="time",
        asset=ASSET,
        tags={"flow": "flow", "pressure": "discharge_pressure"},
        units={"flow": "m3/h"},
    )
    fs = frames(src)
    assert [f["scan_time"] for f in fs] == [T, T + 1_000_000, T + 2_000_000 - 3_600_000_000]
    assert all(f["historical"] and f["asset"] == ASSET for f in fs)
    assert [f["seq"] for f in fs] == [0, 1, 2]
    assert fs[0]["samples"] == [
        {"tag": "flow", "source_time": T, "value": 10.5, "quality": "GOOD", "unit": "m3/h"},
        {"tag": "discharge_pressure", "source_time": T, "value": 4, "quality": "GOOD", "unit": ""},
    ]
    assert [s["tag"] for s in fs[1]["samples"]] == ["discharge_pressure"]  # an empty cell is no sample
    assert count_rows(src) == 3


def test_long_parquet_groups_rows_of_one_time(tmp_path: Path) -> None:
    path = tmp_path / "long.parquet"
    table = pa.table(
        {
            "ts": [1767225600.0, 1767225600.0, 1767225601.0, 1767225601.0, 1767225601.0],
            "machine": [ASSET, ASSET, ASSET, ASSET, "demo.springfield.utilities.water.pump2"],
            "name": ["flow", "mode", "flow", "mode", "flow"],
            "val": ["1.5", "auto", "2.5", None, "9"],
            "status": [0, 0, 0x40000000, 0, 0x80320000],
        }
    )
    pq.write_table(table, path)
    src = ReplaySource(
        name="l",
        path=str(path),
        format="long",
        timestamp_column="ts",
        timestamp_format="epoch_s",
        asset_column="machine",
        tag_column="name",
        value_column="val",
        quality_column="status",
    )
    fs = frames(src)
    assert [(f["asset"][-5:], f["scan_time"], len(f["samples"])) for f in fs] == [
        ("pump1", T, 2),
        ("pump1", T + 1_000_000, 2),
        ("pump2", T + 1_000_000, 1),
    ]
    assert fs[0]["samples"][1]["value"] == "auto"
    assert fs[1]["samples"][0]["quality"] == "UNCERTAIN" and fs[1]["samples"][1] == {
        "tag": "mode",
        "source_time": T + 1_000_000,
        "value": None,
        "quality": "BAD",
        "unit": "",
    }
    assert fs[2]["samples"][0]["quality"] == "BAD" and fs[2]["samples"][0]["value"] == 9.0
    assert count_rows(src) == 5


def test_strptime_format_and_local_zone(tmp_path: Path) -> None:
    path = tmp_path / "de.csv"
    path.write_text("Zeit,temp\n01.01.2026 01:00:00,20\n")
    src = ReplaySource(
        name="de",
        path=str(path),
        timestamp_column="Zeit",
        timestamp_format="%d.%m.%Y %H:%M:%S",
        timezone="Europe/Berlin",
        asset=ASSET,
    )
    assert frames(src)[0]["scan_time"] == T  # 01:00 in Berlin in winter is 00:00 UTC


def test_bad_input_names_row_column_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("timestamp,x\n2026-01-01T00:00:00Z,1\nyesterday,2\n")
    src = ReplaySource(name="b", path=str(path), asset=ASSET)
    with pytest.raises(ReplayError, match=r"row 2 of .*bad\.csv.*timestamp_format"):
        frames(src)
    with pytest.raises(ReplayError, match="no column 'time'"):
        frames(src.model_copy(update={"timestamp_column": "time"}))
    with pytest.raises(ReplayError, match="does not exist"):
        frames(src.model_copy(update={"path": str(tmp_path / "nope.csv")}))
    with pytest.raises(ValueError, match="needs asset"):
        ReplaySource(name="x", path="p.csv")


def test_quality_codes() -> None:
    assert [quality_of(q) for q in ("good", "BAD", 0, 0x40920000, 0x80000000, None)] == [
        "GOOD",
        "BAD",
        "GOOD",
        "UNCERTAIN",
        "BAD",
        "GOOD",
    ]
    with pytest.raises(ValueError, match="not GOOD"):
        quality_of("fine")


def test_replayed_tags_declare_names_units_and_roles(tmp_path: Path) -> None:
    path = tmp_path / "bench.csv"
    path.write_text("datetime;Current;Pressure;anomaly;note\n2026-01-01 00:00:00;1.5;4.0;0;x\n")
    src = ReplaySource(
        name="bench",
        path=str(path),
        delimiter=";",
        timestamp_column="datetime",
        asset=ASSET,
        tags={
            "Current": {"name": "motor_current", "unit": "A"},
            "Pressure": "discharge_pressure",
            "anomaly": {"name": "label", "role": "status"},
        },
        units={"discharge_pressure": "bar"},
    )
    (f,) = frames(src)
    assert [(s["tag"], s["unit"]) for s in f["samples"]] == [
        ("motor_current", "A"),
        ("discharge_pressure", "bar"),
        ("label", ""),
    ]  # the undeclared note column is not replayed
    s = Settings(plant={"assets": [{"path": ASSET}]}, replay=[src.model_dump()])
    assert feature_tags(s, ASSET) == ["motor_current", "discharge_pressure"]  # the label is no process value
    skipped = ReplaySource(
        name="s",
        path=str(path),
        delimiter=";",
        timestamp_column="datetime",
        asset=ASSET,
        skip_columns=["anomaly", "note"],
    )
    assert [x["tag"] for x in frames(skipped)[0]["samples"]] == ["Current", "Pressure"]


def test_config_mistakes_are_one_line_errors_naming_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "semi.csv"
    path.write_text("timestamp;flow;pressure\n2026-01-01T00:00:00Z;1;2\n")
    src = ReplaySource(name="s", path=str(path), asset=ASSET, delimiter=";")
    assert check_source(src) == ["timestamp", "flow", "pressure"]
    with pytest.raises(ReplayError, match=r"delimiter: ';'") as e:
        check_source(src.model_copy(update={"delimiter": ","}))
    assert "\n" not in str(e.value)
    with pytest.raises(ReplayError, match=r"\['presure'\].*spelling"):
        check_source(src.model_copy(update={"tags": {"flow": "flow", "presure": "pressure"}}))
    missing = src.model_copy(update={"path": str(tmp_path / "nope.csv")})
    with pytest.raises(ReplayError, match=r"nope\.csv does not exist.*replay\[\]\.path"):
        check_source(missing)
    with pytest.raises(ReplayError, match="does not exist"):  # not a FileNotFoundError traceback
        replay(missing, lambda _f: None, speed=None, progress=False)


def test_check_config_checks_replay_sources(tmp_path: Path, clean_env: None) -> None:
    from typer.testing import CliRunner

    from plantstream.cli import app

    config = tmp_path / "plant.yaml"
    raw = {
        "plant": {"assets": [{"path": ASSET}]},
        "replay": [{"name": "hist", "path": str(tmp_path / "missing.csv"), "asset": ASSET}],
    }
    config.write_text(yaml.safe_dump(raw))
    bad = CliRunner().invoke(app, ["check-config", str(config)])
    assert bad.exit_code == 2 and "replay[hist]" in bad.output and "missing.csv does not exist" in bad.output
    (tmp_path / "missing.csv").write_text("timestamp,x\n2026-01-01T00:00:00Z,1\n")
    ok = CliRunner().invoke(app, ["check-config", str(config)])
    assert ok.exit_code == 0 and "1 replay sources" in ok.output
