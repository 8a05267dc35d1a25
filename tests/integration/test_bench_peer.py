"""`plantstream bench worker --peer quix` in small: our worker (every stage, then KPI windows only) and the
Quix Streams reference app drain one backlog, and the peer's windows equal ours field by field."""

from __future__ import annotations

from pathlib import Path

import pytest

from plantstream.bench.worker import run_worker_bench
from plantstream.core.config import Settings
from tests.conftest import Stack, plant_raw

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_env")]


@pytest.mark.timeout(300)
def test_peer_drains_the_same_backlog_and_its_windows_equal_ours(stack: Stack, tmp_path: Path) -> None:
    settings = Settings(**plant_raw(tmp_path, stack))
    # 4 assets x 6 tags at 10 Hz, 1,200 frames: 30 s of event time, two closed 10 s windows per tag at least
    r = run_worker_bench(
        settings, assets=4, tags=6, frames=1200, rate_hz=10.0, profile=False, peer_name="quix", repeats=1
    )
    assert [run["variant"] for run in r["runs"]] == ["all", "kpi", "quix"]
    # a backlog this small drains within one progress flush, so its rates say nothing: only that all ran
    assert all(run["drain_s"] >= 0 and run["rss_mb_max"] > 0 for run in r["runs"])
    check = r["windows_check"]
    (peer_run,) = check["per_peer_run"].values()
    assert peer_run["compared"] >= 4 * 6 * 2  # every tag of every asset, two windows at least
    assert peer_run["mismatched"] == 0 and peer_run["closable_windows_not_in_peer"] == 0
    assert peer_run["peer_windows_not_in_ours"] == 0
    assert check["equal"] and check["our_runs_disagreeing_copies"] == 0
    assert set(r["ratio_to_peer"]) == {"all_stages", "kpi_only"}
    # the KPI-only run closes the same windows and nothing else
    kpi = next(run for run in r["runs"] if run["variant"] == "kpi")
    assert kpi["outputs"]["oee_windows"] == 0 and kpi["outputs"]["anomaly_scores"] == 0
    assert r["outputs"]["oee_windows"] > 0 and r["outputs"]["anomaly_scores"] > 0
