"""`plantstream bench dashboard`: first paint and time to charts drawn with a day of history for one asset
(and, in dashboard_plant.py, the page with 1,000 assets).

A temporary SQLite store gets HOURS of samples (TAGS process values every SCAN seconds) plus anomaly scores
and OEE windows for one asset; `plantstream dashboard --no-live` serves it (history only, in its own
process, no broker needed) and Debian's chromium, driven by Playwright, loads the page LOADS times in
fresh browser contexts, first with raw samples only, then with the processor's KPI windows. The browser's own
Paint Timing entries give first paint and first contentful paint; the page marks `charts-drawn` when the
history's trends are on screen.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from plantstream.core.config import Settings
from plantstream.core.errors import ToolError
from plantstream.core.records import AnomalyScore, KpiWindow, OeeWindow, ReadingFrame, reading_frame, sample
from sinks.batch import Batch

CHROMIUM = "/usr/bin/chromium"
ASSET = "bench.site.area.line.machine1"


def chromium_path() -> str:
    found = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if found is None:
        raise ToolError("chromium is not installed. Fix: apt-get install -y chromium (Debian's package)")
    return found


def launch_chromium(playwright: Any) -> Any:
    """Headless Debian chromium (never a downloaded browser: no `playwright install`)."""
    return playwright.chromium.launch(
        executable_path=chromium_path(),
        headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_settings(state_dir: Path, tags: int, scan_s: float, port: int) -> Settings:
    raw: dict[str, Any] = dict(
        plant={"name": "dashboard bench", "assets": [{"path": ASSET, "kind": "machine"}]},
        devices=[
            {
                "name": "machine1-plc",
                "protocol": "modbus_tcp",
                "asset": ASSET,
                "poll_interval_s": scan_s,
                "tags": [{"name": f"pv{i:02d}", "unit": "u", "type": "float32", "address": 2 * i} for i in range(tags)],
            }
        ],
        pipeline={"state_dir": str(state_dir), "dashboard": {"port": port}},
    )
    return Settings(**raw)


def synthetic(i: int, k: int, scan_s: float) -> float:
    return 50 + 10 * math.sin(i * scan_s / 600 + k) + (i % 7) * 0.1


def fill_store(settings: Settings, hours: float, tags: int, scan_s: float, end_us: int) -> tuple[int, list[KpiWindow]]:
    """HOURS of frames ending at end_us, written through the storage sink's own store; returns the samples
    written and the KPI windows the processor would have emitted for them (written later by the caller)."""
    from sinks.stores.registry import open_store

    store = open_store(settings)
    n = int(hours * 3600 / scan_s)
    step = int(scan_s * 1e6)
    start = end_us - n * step
    window_us = settings.pipeline.windows.kpi_window_s * 10**6
    windows: dict[tuple[str, int], list[float]] = {}
    samples = 0
    try:
        batch: list[ReadingFrame] = []
        scores: list[AnomalyScore] = []
        for i in range(n):
            t = start + i * step
            vals = [synthetic(i, k, scan_s) for k in range(tags)]
            batch.append(
                reading_frame(
                    asset=ASSET,
                    device="machine1-plc",
                    seq=i,
                    producer_id="bench",
                    scan_time=t,
                    samples=[sample(f"pv{k:02d}", t, v) for k, v in enumerate(vals)],
                )
            )
            ws = t - t % window_us
            if ws + window_us <= end_us:  # closed windows only, as the processor emits them
                for k, v in enumerate(vals):
                    windows.setdefault((f"pv{k:02d}", ws), []).append(v)
            scores.append(
                {
                    "asset": ASSET,
                    "time": t,
                    "model": "bench",
                    "score": abs(math.sin(i * scan_s / 600)),
                    "threshold": 0.9,
                    "is_anomaly": False,
                    "warming_up": False,
                    "contributions": {},
                }
            )
            if len(batch) >= 5000:
                store.write(Batch(frames=list(batch), anomaly_scores=scores))
                samples += len(batch) * tags
                batch, scores = [], []
        oee: list[OeeWindow] = [
            {
                "asset": ASSET,
                "window_start": w,
                "window_end": w + 3600 * 10**6,
                "shift": "",
                "planned_busy_time_s": 3600.0,
                "actual_production_time_s": 3300.0,
                "produced_quantity": 100.0,
                "good_quantity": 97.0,
                "scrap_quantity": 3.0,
                "availability": 0.917,
                "effectiveness": 0.9,
                "quality_ratio": 0.97,
                "oee": 0.8,
                "scrap_ratio": 0.03,
                "failures": 1,
                "mtbf_s": 3300.0,
                "mttr_s": 300.0,
                "downtime_by_reason_s": {"jam": 200.0, "setup": 100.0},
                "revision": 0,
                "data_coverage": 1.0,
            }
            for w in range(start - start % (3600 * 10**6), end_us, 3600 * 10**6)
        ]
        store.write(Batch(frames=list(batch), anomaly_scores=scores, oee_windows=oee))
        samples += len(batch) * tags
    finally:
        store.close()
    kpis: list[KpiWindow] = [
        {
            "asset": ASSET,
            "tag": tag,
            "window_start": ws,
            "window_end": ws + window_us,
            "unit": "u",
            "count": len(v),
            "bad_count": 0,
            "min": min(v),
            "max": max(v),
            "mean": sum(v) / len(v),
            "stddev": None,
            "first": v[0],
            "last": v[-1],
            "first_time": None,
            "last_time": None,
            "time_weighted_avg": None,
            "rate_of_change": None,
            "revision": 0,
            "data_coverage": 1.0,
        }
        for (tag, ws), v in windows.items()
    ]
    return samples, kpis


def add_kpi_windows(settings: Settings, kpis: list[KpiWindow]) -> None:
    from sinks.stores.registry import open_store

    store = open_store(settings)
    try:
        store.write(Batch(kpi_windows=kpis))
    finally:
        store.close()


def start_server(settings: Settings, state_dir: Path) -> subprocess.Popen[bytes]:
    """`plantstream dashboard --no-live` in its own process, as users run it (history only: no broker)."""
    config = state_dir / "bench-plant.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json", exclude_unset=True), sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANTSTREAM_")}
    with open(state_dir / "dashboard.log", "ab") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "plantstream",
                "--config",
                str(config),
                "--log-level",
                "warning",
                "dashboard",
                "--no-live",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_port(port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the dashboard exited with code {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the dashboard did not listen on port {port} within {timeout:.0f} s")


MEASURE_JS = """() => {
  const paint = Object.fromEntries(performance.getEntriesByType('paint').map(e => [e.name, e.startTime]));
  const mark = performance.getEntriesByName('charts-drawn')[0];
  const hist = performance.getEntriesByType('resource').find(e => e.name.includes('/api/history'));
  return {first_paint_ms: paint['first-paint'] ?? null,
          first_contentful_paint_ms: paint['first-contentful-paint'] ?? null,
          charts_drawn_ms: mark ? mark.startTime : null, history_api_ms: hist ? hist.duration : null,
          history_bytes: hist ? hist.transferSize : null};
}"""


def measure_loads(port: int, loads: int) -> list[dict[str, Any]]:
    from playwright.sync_api import sync_playwright

    runs: list[dict[str, Any]] = []
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            for _ in range(loads):
                context = browser.new_context(viewport={"width": 1400, "height": 900})  # cold: no cache
                page = context.new_page()
                page.goto(f"http://127.0.0.1:{port}/#asset={ASSET}")
                page.wait_for_selector("body[data-charts-drawn='1']", timeout=30_000)
                runs.append(page.evaluate(MEASURE_JS))
                context.close()
        finally:
            browser.close()
    return runs


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def med(key: str) -> float | None:
        vals = [r[key] for r in runs if r.get(key) is not None]
        return round(statistics.median(vals), 1) if vals else None

    return {
        "median_first_paint_ms": med("first_paint_ms"),
        "median_first_contentful_paint_ms": med("first_contentful_paint_ms"),
        "median_charts_drawn_ms": med("charts_drawn_ms"),
        "median_history_api_ms": med("history_api_ms"),
        "history_bytes": med("history_bytes"),
        "runs": runs,
    }


def run_dashboard_bench(hours: float = 24.0, tags: int = 10, scan_s: float = 1.0, loads: int = 7) -> dict[str, Any]:
    """Two cases: only raw samples in the store (no processor ran), then with the processor's KPI windows."""
    from plantstream.bench.common import machine

    with tempfile.TemporaryDirectory(prefix="dash-bench-") as tmp:
        port = free_port()
        settings = bench_settings(Path(tmp), tags, scan_s, port)
        t0 = time.perf_counter()
        samples, kpis = fill_store(settings, hours, tags, scan_s, int(time.time() * 1e6))
        fill_s = time.perf_counter() - t0
        cases = {}
        for case in ("raw_samples_only", "with_kpi_windows"):
            if case == "with_kpi_windows":
                add_kpi_windows(settings, kpis)
            server = start_server(settings, Path(tmp))
            try:
                wait_port(port, proc=server)
                cases[case] = summarize(measure_loads(port, loads))
            finally:
                stop_server(server)
    return {
        "bench": "dashboard",
        "history_hours": hours,
        "tags": tags,
        "scan_s": scan_s,
        "samples_in_store": samples,
        "kpi_windows_in_store": len(kpis),
        "store_fill_s": round(fill_s, 1),
        "loads": loads,
        "target_first_paint_ms": 1000,
        **cases,
        "browser": chromium_path(),
        "machine": machine(),
    }
