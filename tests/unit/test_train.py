"""`plantstream train` from the SQLite store and from a replay source, up to the checkpoint (no broker here; the
changelog hand-over to the worker is tests/integration/test_anomaly_train.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from plantstream.cli import app
from plantstream.core.config import Settings
from plantstream.train import TrainError, readings_partition, train
from processors.anomaly import AnomalyStage
from sinks.stores.sqlite import SqliteStore
from tests.helpers import as_batch

ASSET = "a.b.c.d.e"
S = 1_000_000


def normal_frames(n: int) -> list[dict]:
    rng = np.random.default_rng(2)
    out = []
    for i in range(n):
        load = np.sin(i / 25) + rng.normal(0, 0.1)
        values = {"x": 10 + load + rng.normal(0, 0.05), "y": 3 - 2 * load + rng.normal(0, 0.05), "z": load**2}
        t = (1_767_225_600 + 10 * i) * S
        out.append(
            {
                "asset": ASSET,
                "device": "d",
                "seq": i,
                "producer_id": "p",
                "scan_time": t,
                "historical": True,
                "buffered": False,
                "samples": [
                    {"tag": k, "source_time": t, "value": v, "quality": "GOOD", "unit": ""} for k, v in values.items()
                ],
            }
        )
    return out


def settings(tmp_path: Path, **extra: object) -> Settings:
    raw = {
        "plant": {"assets": [{"path": ASSET}]},
        "pipeline": {"storage": {"sqlite_path": str(tmp_path / "plant.db")}, "state_dir": str(tmp_path / "state")},
        **extra,
    }
    return Settings(**raw)  # type: ignore[arg-type]


def test_train_from_the_store_gives_a_ready_checkpoint_the_stage_restores(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "plant.db")
    store.write(as_batch(normal_frames(500)))
    store.close()
    state = train(settings(tmp_path), ASSET)
    assert state["trained"] and state["warmup"] == 300 and state["features"]["tags"] == ["x", "y", "z"]
    stage = AnomalyStage()
    stage.restore(ASSET, json.loads(json.dumps(state, allow_nan=False)))
    rec = stage.score(ASSET, normal_frames(501)[-1])
    assert rec is not None and not rec["warming_up"]
    since = train(settings(tmp_path), ASSET, since_us=(1_767_225_600 + 10 * 100) * S)
    assert since["n"] < state["n"]  # --since cuts the history
    with pytest.raises(TrainError, match="no frames of this asset"):
        train(settings(tmp_path), "x.y.z.w.v")
    with pytest.raises(TrainError, match="too few to train"):
        train(settings(tmp_path), ASSET, since_us=(1_767_225_600 + 10 * 400) * S)


def test_train_cli_from_a_replay_source_writes_the_checkpoint(tmp_path: Path) -> None:
    csv = tmp_path / "hist.csv"
    rows = ["timestamp,x,y,z"] + [
        f"{f['scan_time'] // S},{','.join(str(s['value']) for s in f['samples'])}" for f in normal_frames(400)
    ]
    csv.write_text("\n".join(rows) + "\n")
    config = tmp_path / "plant.yaml"
    config.write_text(
        json.dumps(
            {
                "plant": {"assets": [{"path": ASSET}]},
                "replay": [{"name": "h", "path": str(csv), "asset": ASSET, "timestamp_format": "epoch_s"}],
                "pipeline": {"state_dir": str(tmp_path / "state")},
            }
        )
    )
    out = tmp_path / "model.json"
    r = CliRunner().invoke(
        app, ["--config", str(config), "train", "--asset", ASSET, "--source", "h", "--out", str(out)]
    )
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output.strip().splitlines()[-1])
    assert summary["warmup_frames"] == 240 and summary["written_to"] == str(out)
    assert json.loads(out.read_text())["trained"]
    bad = CliRunner().invoke(app, ["--config", str(config), "train", "--asset", ASSET, "--source", "nope"])
    assert bad.exit_code == 2 and "no replay source 'nope'" in bad.output


def test_readings_partition_is_librdkafkas_consistent_partitioner() -> None:
    # CRC-32 of the key modulo the partitions, as librdkafka's default partitioner (CRC-32 of b"a" is 0xE8B7BE43; the
    # worker finding the model in its asset's partition over the broker is tests/integration/test_anomaly_train.py)
    assert [readings_partition("a", n) for n in (1, 3, 6, 7)] == [0xE8B7BE43 % n for n in (1, 3, 6, 7)]
