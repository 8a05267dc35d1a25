"""The page with 1,000 assets: a lazy asset tree, search, and selecting an asset from the results.

`plantstream dashboard --no-live` (its own process, no broker needed) serves a SQLite store with a few recent
frames of every asset; Debian's chromium loads the page. The figures (times, DOM size, API bytes) are measured
by `plantstream bench dashboard`, not here.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import httpx
import pytest

from plantstream.bench.dashboard import free_port, launch_chromium, start_server, stop_server, wait_port
from plantstream.bench.dashboard_plant import fill_plant, plant_settings
from tests.conftest import REPO
from tests.system import require

pytestmark = pytest.mark.integration

ARTIFACTS = REPO / "build" / "test-artifacts"


def test_thousand_assets_tree_search_and_select() -> None:
    require("chromium")  # playwright drives Debian's chromium (no `playwright install`)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="dash-scale-") as tmp:
        port = free_port()
        settings = plant_settings(Path(tmp), 1000, 4, 5.0, port)
        fill_plant(settings, 0.25, 4, 5.0, int(time.time() * 1e6))
        server = start_server(settings, Path(tmp))
        try:
            wait_port(port, 60, proc=server)
            base = f"http://127.0.0.1:{port}"
            plant = httpx.get(base + "/api/plant", timeout=30).json()
            assert len(plant["assets"]) == 1000 and "tags" not in plant["assets"][0]  # tags come per asset
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            with sync_playwright() as pw:
                browser = launch_chromium(pw)
                try:
                    page = browser.new_page(viewport={"width": 1600, "height": 1100})
                    page.set_default_timeout(20_000)
                    page.goto(base + "/")
                    page.wait_for_selector("body[data-charts-drawn='1']")
                    assert page.inner_text("#asset-count") == "1000"
                    # lazy: only the branch down to the selected asset is open, so few leaves are in the page
                    assert 1 <= page.locator("#tree .leaf").count() <= 10
                    page.fill("#search", "area7 line3")
                    page.wait_for_selector("#results[data-count='10']")
                    assert page.locator("#results .leaf").count() == 10 and page.is_hidden("#tree")
                    page.wait_for_selector("#results .leaf.online")  # status shown on the results too
                    page.screenshot(path=str(ARTIFACTS / "dashboard-1000-search.png"), full_page=True)
                    target = page.locator("#results .leaf").nth(4).get_attribute("data-asset")
                    assert target is not None and ".area7.line3." in target
                    page.click(f"#results .leaf[data-asset='{target}']")
                    page.wait_for_function(f"(document.body.dataset.trendsFor || '').startsWith('{target}|')")
                    assert page.inner_text("#asset-title") == target
                    assert page.locator("#trends .chart").count() == 5  # 4 process values + the anomaly score
                    page.fill("#search", "")
                    page.wait_for_selector("#tree:not([hidden])")
                    page.wait_for_selector(f"#tree .leaf.selected[data-asset='{target}']")  # its branch opened
                    page.fill("#search", "no such machine")
                    page.wait_for_selector("#results[data-count='0']")
                finally:
                    browser.close()
        finally:
            stop_server(server)
