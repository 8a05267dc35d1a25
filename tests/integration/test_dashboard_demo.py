"""The operator's first minute: `plantstream up` on the demo plant (its Modbus devices), the page in Debian's
chromium about half a minute in, as issue 20 tried it.

Every stage the pipeline runs shows in the health panel as running with a rate above zero while data flows,
the same stages and states `plantstream status --json` prints at that moment; the header says live; the press
shows its machine state by name and since when, its counter's rate per minute, and trends fitted to the
minute of data there is. Screenshot: build/test-artifacts/dashboard-demo-first-minute.png.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO, Stack, free_port, plant_raw, write_config
from tests.helpers import wait_for
from tests.system import require

pytestmark = pytest.mark.integration

PRESS = "demo.springfield.stamping.line1.press1"
ARTIFACTS = REPO / "build" / "test-artifacts"
STAGES = ("producer-modbus", "processor", "sink-storage")  # what `up` runs for a Modbus-only plant


def flowing(stages: list[dict[str, Any]]) -> bool:
    by = {s["component"]: s for s in stages}
    return all(c in by and by[c]["state"] == "running" and (by[c]["rate_per_s"] or 0) > 0 for c in STAGES)


def test_demo_first_minute(stack: Stack, tmp_path: Path, clean_env: None) -> None:
    require("chromium")  # playwright drives Debian's chromium (no `playwright install`)
    from playwright.sync_api import sync_playwright

    from plantstream.bench.dashboard import launch_chromium

    dport = free_port()
    raw = plant_raw(tmp_path, stack, dashboard={"port": dport})
    device_port = free_port()
    for d in raw["devices"]:
        d.update(port=device_port)
    config = write_config(tmp_path, raw)
    err = tmp_path / "up.err"
    with open(tmp_path / "up.out", "wb") as o, open(err, "wb") as e:
        up = subprocess.Popen(
            [sys.executable, "-m", "plantstream", "--config", str(config), "up", "--duration", "150"],
            stdout=o,
            stderr=e,
            stdin=subprocess.DEVNULL,
        )
    base = f"http://127.0.0.1:{dport}"

    def health() -> dict[str, Any] | None:
        try:
            return dict(httpx.get(base + "/api/state", timeout=5).json()["health"])
        except (httpx.HTTPError, ValueError):
            return None

    try:
        wait_for(lambda: flowing((health() or {}).get("stages", [])), 90, 1.0, "every stage running with a rate")
        status = subprocess.run(
            [sys.executable, "-m", "plantstream", "--config", str(config), "status", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0, status.stderr
        printed = json.loads(status.stdout)["stages"]
        shown = (health() or {})["stages"]
        assert flowing(printed), printed  # `plantstream status` sees the same: running, data moving
        assert [(s["component"], s["state"], s["group"]) for s in shown] == [
            (s["component"], s["state"], s["group"]) for s in printed
        ]
        assert next(s for s in shown if s["component"] == "processor")["lag"] is not None
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as pw:
            browser = launch_chromium(pw)
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 1100})
                page.set_default_timeout(20_000)
                page.goto(f"{base}/#asset={PRESS}")
                page.wait_for_selector("body[data-charts-drawn='1']")
                page.wait_for_selector("#conn[data-state='live']")
                for c in STAGES:  # running, and a rate that is a number above zero
                    page.wait_for_function(
                        f"(r => r && r.dataset.state === 'running' && parseFloat(r.cells[2].textContent) > 0)"
                        f"(document.querySelector(\"#health tr[data-component='{c}']\"))"
                    )
                # the press: its state by name and since when, not the raw code
                page.wait_for_function(
                    "['RUNNING', 'IDLE', 'PLANNED_STOP', 'UNPLANNED_STOP']"
                    ".includes(document.querySelector('#machine-state').dataset.state)"
                )
                assert not any(ch.isdigit() for ch in page.inner_text("#machine-state").split(" · ")[0])
                assert page.inner_text("#state-since").startswith("since")
                page.wait_for_function(
                    "/^[0-9.]+\\/min$/.test(document.querySelector(\"#values tr[data-tag='strokes_total'] .rate\")"
                    ".textContent)"
                )
                assert page.inner_text("#trend-range").startswith("last 15 min · 2 s buckets · fitted")
                assert page.locator("#timeline .seg").count() >= 1
                page.screenshot(path=str(ARTIFACTS / "dashboard-demo-first-minute.png"), full_page=True)
            finally:
                browser.close()
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(60)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait()
    assert "stopping:" in err.read_text(), err.read_text()[-3000:]
