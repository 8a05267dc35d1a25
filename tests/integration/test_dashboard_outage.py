"""The page while Kafka is down: `plantstream dashboard` (live) started with no broker at its address.

The header says "Kafka unreachable" with the fix in its tooltip (not "connecting" or "live"), the health panel
says Kafka does not answer, and the store's history is still there to read: the "Shift" and "Custom…" trend
ranges driven in Debian's chromium. No broker is started here. Screenshots land in build/test-artifacts/.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from plantstream.core.config import Settings
from sinks.stores.registry import open_store
from tests.conftest import REPO, free_port, plant_raw, write_config
from tests.helpers import as_batch, stop, wait_for
from tests.system import require

pytestmark = pytest.mark.integration

PRESS = "demo.springfield.stamping.line1.press1"
ARTIFACTS = REPO / "build" / "test-artifacts"
US = 1_000_000
MIN = 60 * US


def hm(d: datetime) -> str:
    return d.strftime("%H:%M")


def seed(settings: Settings, now: int) -> None:
    """90 minutes of press frames every 10 s up to 30 s ago (longer than the offline limit), as the storage sink
    would have written them before Kafka went."""

    def t(i: int) -> int:
        return now - 30 * US - (539 - i) * 10 * US

    frames = [
        {
            "asset": PRESS,
            "device": "press1-plc",
            "seq": i,
            "producer_id": "seed",
            "scan_time": t(i),
            "historical": False,
            "buffered": False,
            "samples": [
                {"tag": "oil_temperature", "source_time": t(i), "value": 50.0 + i % 12},
                {"tag": "state", "source_time": t(i), "value": 1},
            ],
        }
        for i in range(540)
    ]
    for f in frames:
        for s in f["samples"]:
            s["quality"] = "GOOD"
    ws = now - now % MIN - 40 * MIN
    oee = {  # one window with an unplanned stop (code 4: the demo plant configures no reason names)
        "asset": PRESS,
        "window_start": ws,
        "window_end": ws + MIN,
        "shift": "",
        "planned_busy_time_s": 60.0,
        "actual_production_time_s": 30.0,
        "produced_quantity": 15.0,
        "good_quantity": 15.0,
        "scrap_quantity": 0.0,
        "availability": 0.5,
        "effectiveness": 1.0,
        "quality_ratio": 1.0,
        "oee": 0.5,
        "scrap_ratio": 0.0,
        "failures": 1,
        "mtbf_s": None,
        "mttr_s": None,
        "downtime_by_reason_s": {"4": 30.0},
    }
    store = open_store(settings)
    try:
        store.write(as_batch(frames, [], {"oee_window": [oee]}))
    finally:
        store.close()


def test_kafka_down_header_health_and_history_ranges(tmp_path: Path) -> None:
    require("chromium")  # playwright drives Debian's chromium (no `playwright install`)
    from playwright.sync_api import sync_playwright

    from plantstream.bench.dashboard import launch_chromium

    now = int(time.time() * US)
    port = free_port()
    raw = plant_raw(tmp_path, dashboard={"port": port})
    raw["pipeline"]["kafka"]["bootstrap"] = f"127.0.0.1:{free_port()}"  # nothing listens there
    raw["pipeline"]["registry"]["url"] = f"http://127.0.0.1:{free_port()}"
    t = datetime.fromtimestamp(now / US, UTC).replace(second=0, microsecond=0)
    shift_start = t - timedelta(hours=1)
    raw["plant"]["shifts"] = [{"name": "early", "start": hm(shift_start), "end": hm(t + timedelta(hours=3))}]
    settings = Settings(**raw)
    config = write_config(tmp_path, raw)
    seed(settings, now)
    log = tmp_path / "dashboard.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "plantstream", "--config", str(config), "dashboard"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={
                k: v
                for k, v in os.environ.items()
                if not k.startswith("PLANTSTREAM_") and k not in ("KAFKA_BOOTSTRAP", "SCHEMA_REGISTRY_URL")
            },
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"

    def feed() -> dict[str, Any] | None:
        try:
            return dict(httpx.get(base + "/api/state", timeout=5).json()["health"]["feed"])
        except httpx.HTTPError:
            return None

    try:
        wait_for(lambda: (feed() or {}).get("state") == "broker", 30, 0.3, "the feed to report Kafka unreachable")
        f = feed() or {}
        assert "unreachable" in f["detail"] and "Fix:" in f["detail"], f
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            try:
                context = browser.new_context(viewport={"width": 1600, "height": 1100}, timezone_id="UTC")
                page = context.new_page()
                page.set_default_timeout(20_000)
                page.goto(base + "/#asset=" + PRESS)
                page.wait_for_selector("body[data-charts-drawn='1']")
                # the header: the stream to the dashboard is fine, its Kafka feed is not, and it says which
                page.wait_for_selector("#conn[data-state='degraded']")
                assert page.inner_text("#conn") == "Kafka unreachable"
                assert "Fix:" in (page.get_attribute("#conn", "title") or "")
                # the health panel: Kafka does not answer the sampler (what `plantstream status` reads)
                page.wait_for_function("document.querySelector('#health-note').textContent.includes('not answering')")
                assert page.inner_text("#health-note").startswith(f"Kafka at {settings.pipeline.kafka.bootstrap} not")
                # the press's state: no data since its last stored sample, and what it was before
                page.wait_for_selector("#machine-state[data-state='NO_DATA']")
                assert page.inner_text("#state-since").endswith("RUNNING before")
                # the history is there: the fitted range holds the stored 90 minutes
                assert page.evaluate("S.history.trends.oil_temperature.max.filter(v => v !== null).length") > 0
                # "Shift": from the shift's start to now
                page.click(".range-btn[data-range='shift']")
                page.wait_for_function(f"document.body.dataset.trendsFor === '{PRESS}|shift'")
                assert page.inner_text("#trend-range").startswith("this shift")
                start = page.evaluate("S.history.start")
                assert start == int(shift_start.timestamp() * US)
                # "Custom…": a form prefilled with the shown range; 60 to 30 minutes ago
                page.click(".range-btn[data-range='custom']")
                page.wait_for_selector("#custom-range:not([hidden])")
                lo, hi = t - timedelta(minutes=60), t - timedelta(minutes=30)
                page.fill("#custom-from", lo.strftime("%Y-%m-%dT%H:%M"))
                page.fill("#custom-to", hi.strftime("%Y-%m-%dT%H:%M"))
                page.click("#custom-range button[type=submit]")
                page.wait_for_function(f"document.body.dataset.trendsFor === '{PRESS}|custom'")
                assert page.get_attribute(".range-btn[data-range='custom']", "aria-pressed") == "true"
                h = page.evaluate("((h) => [h.start, h.end, h.bucket_us, h.trends.oil_temperature.t])(S.history)")
                assert h[0] == int(lo.timestamp() * US) and h[1] == int(hi.timestamp() * US)
                assert h[2] <= 10 * US and h[3] and all(h[0] - h[2] <= x < h[1] for x in h[3])
                assert " \u2013 " in page.inner_text("#trend-range")  # from and to, not "last ..."
                # downtime in that range, its bare reason code named by its state
                assert page.inner_text("#downtime .kpi[data-reason='4'] span") == "4 · unplanned stop"
                page.screenshot(path=str(ARTIFACTS / "dashboard-kafka-down.png"), full_page=True)
                context.close()
            finally:
                browser.close()
    finally:
        stop(proc, 15)
