"""`plantstream bench alerts` in small: a real worker, live load, every planned alert state change received."""

from __future__ import annotations

from pathlib import Path

import pytest

from plantstream.bench.alerts import run_alert_latency_bench
from plantstream.core.config import Settings
from tests.conftest import Stack, plant_raw

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_env")]


@pytest.mark.timeout(120)
def test_alert_latency_bench_matches_every_state_change_to_its_sample(stack: Stack, tmp_path: Path) -> None:
    settings = Settings(**plant_raw(tmp_path, stack))
    r = run_alert_latency_bench(
        settings, assets=4, tags=5, rate_hz=5.0, duration_s=8.0, warmup_s=1.0, trip_every_s=2.0, trip_scans=2
    )
    al = r["alerts"]
    assert al["unmatched"] == 0  # every alert's time is the source time of a sample that changed its state
    assert al["state_changes_sent_after_warmup"] >= 8  # 4 assets trip every 2 s: RAISED and CLEARED each
    assert al["missing_after_warmup"] == 0 and al["measured"] == al["state_changes_sent_after_warmup"]
    lat = r["latency_ms_sample_to_alert"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"] < 30_000
    assert r["note"] and r["machine"]["cpus"]
