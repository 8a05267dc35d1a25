"""The public-data benchmarks' code on small files of the same formats (the data sets themselves are not in CI):
NAB's scoring rules, the TE protocol against PCA, and the cache's clear error when a data set is missing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from plantstream.bench import nab, tennessee_eastman
from plantstream.bench.datasets import NAB, TENNESSEE_EASTMAN, DatasetMissing, require


def test_nab_score_follows_nab_rules() -> None:
    windows = [(100, 119), (300, 319)]
    none = [False] * 400
    assert nab.nab_score(none, windows) == -2.0  # two missed windows
    assert nab.normalised(-2.0, 2) == 0.0
    early = none.copy()
    early[100] = early[300] = True
    assert nab.nab_score(early, windows) == pytest.approx(2.0)  # both caught at their first row: perfect
    assert nab.normalised(nab.nab_score(early, windows), 2) == 100.0
    late = none.copy()
    late[119] = True  # the last row of a window earns little
    assert nab.nab_score(late, windows) == pytest.approx(-1.0 + 0.126, abs=0.001)
    false = none.copy()
    false[200] = True  # between windows, shortly after the first: nearly a full -0.11
    assert nab.nab_score(false, windows) == pytest.approx(-2.0 - 0.11, abs=0.01)
    probation = none.copy()
    probation[10] = True  # inside the first 15 %: not scored
    assert nab.nab_score(probation, windows) == -2.0


def test_nab_run_on_a_small_series(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n = 2000
    values = 50 + rng.normal(0, 1, n)
    values[1500:1520] += 25.0
    times = [f"2014-01-{1 + i // 288:02d} {i % 288 // 12:02d}:{i % 12 * 5:02d}:00" for i in range(n)]
    rel = "realKnownCause/machine_temperature_system_failure.csv"
    (tmp_path / "data" / "realKnownCause").mkdir(parents=True)
    (tmp_path / "data" / rel).write_text(
        "timestamp,value\n" + "".join(f"{t},{v}\n" for t, v in zip(times, values, strict=True))
    )
    (tmp_path / "labels").mkdir()
    labels = {rel: [[times[1490] + ".000000", times[1560] + ".000000"]]}
    (tmp_path / "labels" / "combined_windows.json").write_text(json.dumps(labels))
    r = nab.run(tmp_path, series=[rel])
    f = r["files"][rel]
    assert f["rows"] == n and f["windows"] == 1
    assert f["normalised"] > 50.0, f  # the jump is caught early in its window


def _te_files(root: Path) -> None:
    """Tennessee-Eastman-shaped files: 52 correlated variables, d00.dat stored 52 x 500 as the original; fault NN
    moves variable NN's relation to the others from sample 161 (faults 3, 9, 15 do nothing, as in the real data)."""
    rng = np.random.default_rng(4)
    mix = rng.normal(0, 1, (4, 52))

    def run(n: int, fault: int | None) -> np.ndarray:
        x = rng.normal(0, 1, (n, 4)) @ mix + 0.1 * rng.normal(0, 1, (n, 52)) + 10.0
        if fault and fault not in (3, 9, 15):
            x[160:, fault] += 2.0
        return x

    root.mkdir(parents=True)
    np.savetxt(root / "d00.dat", run(500, None).T)
    np.savetxt(root / "d00_te.dat", run(960, None))
    for k in range(1, 22):
        np.savetxt(root / f"d{k:02d}.dat", run(480, k))
        np.savetxt(root / f"d{k:02d}_te.dat", run(960, k))


def test_tennessee_eastman_protocol_against_pca(tmp_path: Path) -> None:
    root = tmp_path / "tennessee-eastman"
    _te_files(root)
    assert require(TENNESSEE_EASTMAN, tmp_path) == root
    r = tennessee_eastman.run(root)
    assert set(r["detection_rate_per_fault"]) == {str(k) for k in range(1, 22)}
    assert r["false_alarm_rate_d00_te"]["ours"] < 5.0
    ours = r["mean_detection_rate_without_3_9_15"]["ours"]
    assert ours > 80.0, r["mean_detection_rate_without_3_9_15"]
    assert r["detection_rate_per_fault"]["3"]["pca_q"] < 20.0  # no fault: PCA at its false alarm rate


def test_a_missing_data_set_says_where_and_how(tmp_path: Path) -> None:
    with pytest.raises(DatasetMissing, match=r"--fetch.*numenta/NAB"):
        require(NAB, tmp_path)
