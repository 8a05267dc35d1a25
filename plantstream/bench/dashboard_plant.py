"""`plantstream bench dashboard`, plant case: the page with ASSETS assets (default 1,000).

A temporary SQLite store gets MINUTES of recent frames for every asset (TAGS process values, a machine state
and a counter, every SCAN seconds) and one-minute OEE windows; `plantstream dashboard --no-live` serves it and
headless chromium loads the page LOADS times in fresh contexts. Measured in the browser: first paint, the asset
tree drawn (lazy: only open branches are in the DOM), the first asset's charts drawn, the page's DOM size, the
time from typing a search to its results on screen (the 80 ms debounce included), and from clicking a result to
that asset's charts drawn; and the bytes of /api/plant and of one /api/state.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from plantstream.core.config import Settings
from plantstream.core.records import OeeWindow, ReadingFrame, reading_frame, sample
from sinks.batch import Batch

US = 1_000_000


def asset_paths(n: int) -> list[str]:
    """n assets over an ISA-95 tree of 10 areas x 10 lines (enterprise.site.areaA.lineL.mNNN)."""
    return [f"bench.site.area{i % 10}.line{i // 10 % 10}.m{i:04d}" for i in range(n)]


def plant_settings(state_dir: Path, assets: int, tags: int, scan_s: float, port: int) -> Settings:
    paths = asset_paths(assets)
    raw: dict[str, Any] = {
        "plant": {
            "name": f"dashboard bench: {assets} assets",
            "assets": [{"path": p, "kind": "machine", "ideal_cycle_time_s": 2.0} for p in paths],
        },
        "devices": [
            {
                "name": f"plc{i:04d}",
                "protocol": "modbus_tcp",
                "asset": p,
                "poll_interval_s": scan_s,
                "tags": [
                    *({"name": f"pv{k:02d}", "unit": "u", "type": "float32", "address": 2 * k} for k in range(tags)),
                    {"name": "state", "role": "machine_state", "type": "uint16", "address": 2 * tags},
                    {"name": "parts", "role": "counter_total", "type": "uint32", "address": 2 * tags + 1},
                ],
            }
            for i, p in enumerate(paths)
        ],
        "pipeline": {"state_dir": str(state_dir), "dashboard": {"port": port}},
    }
    return Settings(**raw)


def fill_plant(settings: Settings, minutes: float, tags: int, scan_s: float, end_us: int) -> int:
    """MINUTES of frames for every asset and their one-minute OEE windows; returns the samples written."""
    from sinks.stores.registry import open_store

    n = max(2, int(minutes * 60 / scan_s))
    step = int(scan_s * US)
    store = open_store(settings)
    written = 0
    try:
        for a, asset in enumerate(settings.plant.assets):
            frames: list[ReadingFrame] = []
            for i in range(n):
                t = end_us - (n - i) * step
                values = [sample(f"pv{k:02d}", t, 50.0 + (i * 7 + k * 13 + a) % 20) for k in range(tags)]
                values += [sample("state", t, 1 if (i + a) % 40 else 4), sample("parts", t, i + a)]
                frames.append(
                    reading_frame(
                        asset=asset.path, device=f"plc{a:04d}", seq=i, producer_id="bench", scan_time=t, samples=values
                    )
                )
            m0 = end_us - end_us % (60 * US)
            oee: list[OeeWindow] = [
                {
                    "asset": asset.path,
                    "window_start": m0 - (k + 1) * 60 * US,
                    "window_end": m0 - k * 60 * US,
                    "shift": "",
                    "planned_busy_time_s": 60.0,
                    "actual_production_time_s": 50.0,
                    "produced_quantity": 20.0,
                    "good_quantity": 19.0,
                    "scrap_quantity": 1.0,
                    "availability": 50 / 60,
                    "effectiveness": 0.8,
                    "quality_ratio": 0.95,
                    "oee": 50 / 60 * 0.8 * 0.95,
                    "scrap_ratio": 0.05,
                    "failures": 0,
                    "mtbf_s": None,
                    "mttr_s": None,
                    "downtime_by_reason_s": {},
                    "revision": 0,
                    "data_coverage": 1.0,
                }
                for k in range(max(1, int(minutes)))
            ]
            store.write(Batch(frames=list(frames), oee_windows=oee))
            written += len(frames) * (tags + 2)
    finally:
        store.close()
    return written


LOAD_JS = """() => {
  const paint = Object.fromEntries(performance.getEntriesByType('paint').map(e => [e.name, e.startTime]));
  const mark = (n) => { const m = performance.getEntriesByName(n)[0]; return m ? m.startTime : null; };
  return {first_paint_ms: paint['first-paint'] ?? null,
          first_contentful_paint_ms: paint['first-contentful-paint'] ?? null,
          tree_drawn_ms: mark('tree-drawn'), charts_drawn_ms: mark('charts-drawn'),
          dom_nodes: document.getElementsByTagName('*').length,
          tree_leaves: document.querySelectorAll('#tree .leaf').length};
}"""

SEARCH_JS = """async (q) => {
  const t0 = performance.now();
  const box = document.querySelector('#search');
  box.value = q; box.dispatchEvent(new Event('input'));
  while (!(document.querySelector('#results') && !document.querySelector('#results').hidden
           && document.querySelector('#results').dataset.count)) await new Promise(r => requestAnimationFrame(r));
  const t1 = performance.now();
  const res = document.querySelector('#results');
  return {search_ms: t1 - t0, results: Number(res.dataset.count), first: res.querySelector('.leaf').dataset.asset};
}"""

SELECT_JS = """async (asset) => {
  const t0 = performance.now();
  document.querySelector(`#results .leaf[data-asset="${asset}"]`).click();
  while (!(document.body.dataset.trendsFor || '').startsWith(asset + '|')) await new Promise(r => setTimeout(r, 5));
  return {select_to_charts_ms: performance.now() - t0};
}"""


def measure(port: int, loads: int, query: str) -> list[dict[str, Any]]:
    from playwright.sync_api import sync_playwright

    from plantstream.bench.dashboard import launch_chromium

    runs: list[dict[str, Any]] = []
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            for _ in range(loads):
                context = browser.new_context(viewport={"width": 1600, "height": 1100})
                page = context.new_page()
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_selector("body[data-charts-drawn='1']", timeout=60_000)
                run = page.evaluate(LOAD_JS)
                run.update(page.evaluate(SEARCH_JS, query))
                run.update(page.evaluate(SELECT_JS, run["first"]))
                runs.append(run)
                context.close()
        finally:
            browser.close()
    return runs


def run_plant_case(
    assets: int = 1000, tags: int = 10, scan_s: float = 5.0, minutes: float = 10.0, loads: int = 5
) -> dict[str, Any]:
    from plantstream.bench.dashboard import free_port, start_server, stop_server, wait_port

    with tempfile.TemporaryDirectory(prefix="dash-plant-") as tmp:
        port = free_port()
        settings = plant_settings(Path(tmp), assets, tags, scan_s, port)
        t0 = time.perf_counter()
        samples = fill_plant(settings, minutes, tags, scan_s, int(time.time() * US))
        fill_s = time.perf_counter() - t0
        server = start_server(settings, Path(tmp))
        try:
            wait_port(port, proc=server)
            base = f"http://127.0.0.1:{port}"
            plant_bytes = len(httpx.get(base + "/api/plant", timeout=30).content)
            first = settings.plant.assets[0].path
            state_bytes = len(httpx.get(base + "/api/state", params={"asset": first}, timeout=30).content)
            query = "area7 line3"  # the 10 machines of one line
            runs = measure(port, loads, query)
        finally:
            stop_server(server)

    def med(key: str) -> float | None:
        vals = [r[key] for r in runs if r.get(key) is not None]
        return round(statistics.median(vals), 1) if vals else None

    return {
        "assets": assets,
        "tags_per_asset": tags + 2,
        "samples_in_store": samples,
        "store_fill_s": round(fill_s, 1),
        "search": query,
        "search_results": runs[0]["results"] if runs else None,
        "plant_api_bytes": plant_bytes,
        "state_api_bytes": state_bytes,
        **{
            f"median_{k}": med(k)
            for k in (
                "first_paint_ms",
                "first_contentful_paint_ms",
                "tree_drawn_ms",
                "charts_drawn_ms",
                "search_ms",
                "select_to_charts_ms",
                "dom_nodes",
                "tree_leaves",
            )
        },
        "runs": runs,
    }
