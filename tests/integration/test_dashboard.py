"""`plantstream dashboard` over real sockets: a real process, the real broker, a real SQLite store.

One dashboard (with an access token) serves both tests: the API/SSE test speaks HTTP to it, the browser
test drives Debian's chromium through Playwright (no downloaded browser). Screenshots land in
build/test-artifacts/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import schemas
from plantstream.core import kafka_clients, topics
from plantstream.core.config import Settings
from plantstream.core.runstats import RunStats
from sinks.dashboard.acks import AckStore
from sinks.stores.registry import open_store
from tests.conftest import REPO, Stack, free_port, plant_raw, write_config
from tests.helpers import as_batch, prepare_topics, produce, stop, wait_for

pytestmark = pytest.mark.integration

PRESS = "demo.springfield.stamping.line1.press1"
PUMP = "demo.springfield.utilities.water.pump1"
TOKEN = "tok-" + uuid.uuid4().hex
ARTIFACTS = REPO / "build" / "test-artifacts"
US = 1_000_000


@dataclass
class Dash:
    settings: Settings
    base: str
    log: Path

    def get(self, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {TOKEN}", **kw.pop("headers", {})}
        return httpx.get(self.base + path, headers=headers, timeout=10, **kw)

    def state(self) -> dict[str, Any]:
        r = self.get("/api/state")
        r.raise_for_status()
        return dict(r.json())


def seed_store(settings: Settings, now: int) -> None:
    """Two hours of press history, an OEE window with downtime and an open alert, as the sink stores them."""
    frames = [
        {
            "asset": PRESS,
            "device": "press1-plc",
            "seq": i,
            "producer_id": "seed",
            "scan_time": now - (7200 - i * 10) * US,
            "historical": False,
            "buffered": False,
            "samples": [
                {
                    "tag": "oil_temperature",
                    "source_time": now - (7200 - i * 10) * US,
                    "value": 40.0 + i % 10,
                    "quality": "GOOD",
                }
            ],
        }
        for i in range(720)
    ]
    oee = {
        "asset": PRESS,
        "window_start": now - 3600 * US,
        "window_end": now - 1800 * US,
        "shift": "early",
        "planned_busy_time_s": 1800.0,
        "actual_production_time_s": 1500.0,
        "produced_quantity": 100.0,
        "good_quantity": 95.0,
        "scrap_quantity": 5.0,
        "availability": 0.8333,
        "effectiveness": 0.9,
        "quality_ratio": 0.95,
        "oee": 0.7125,
        "scrap_ratio": 0.05,
        "failures": 1,
        "mtbf_s": 1500.0,
        "mttr_s": 300.0,
        "downtime_by_reason_s": {"die change": 240.0, "jam": 60.0},
    }
    stored_alert = {
        "alert_id": "stored-1",
        "asset": PRESS,
        "rule": "press-oil-hot",
        "kind": "threshold",
        "state": "RAISED",
        "severity": "WARNING",
        "time": now - 600 * US,
        "message": "seeded",
        "tags": ["oil_temperature"],
        "value": 81.0,
    }
    store = open_store(settings)
    try:
        store.write(as_batch(frames, [], {"oee_window": [oee], "alert": [stored_alert]}))
    finally:
        store.close()


def frame(settings: Settings, asset: str, values: dict[str, float]) -> tuple[bytes, bytes]:
    codec = kafka_clients.registry(settings).codec(topics.subject(settings, topics.READINGS), schemas.READING_FRAME)
    t = int(time.time() * US)
    rec = {
        "asset": asset,
        "device": "test",
        "seq": t,
        "producer_id": "dash-test",
        "scan_time": t,
        "historical": False,
        "buffered": False,
        "samples": [{"tag": k, "source_time": t, "value": v, "quality": "GOOD"} for k, v in values.items()],
    }
    return asset.encode(), codec.encode(rec)


def publish_frame(settings: Settings, asset: str, values: dict[str, float]) -> None:
    produce(settings, settings.topic(topics.READINGS), [frame(settings, asset, values)])


def publish_alert(settings: Settings, alert_id: str, state: str = "RAISED") -> None:
    rec = {
        "alert_id": alert_id,
        "asset": PRESS,
        "rule": "press-oil-hot",
        "kind": "threshold",
        "state": state,
        "severity": "CRITICAL",
        "time": int(time.time() * US),
        "message": f"oil hot ({alert_id})",
        "tags": ["oil_temperature"],
        "value": 92.5,
    }
    codec = kafka_clients.registry(settings).codec(topics.subject(settings, topics.ALERTS), schemas.ALERT)
    produce(settings, settings.topic(topics.ALERTS), [(PRESS.encode(), codec.encode(rec))])


@pytest.fixture(scope="module")
def dash(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dash]:
    tmp = tmp_path_factory.mktemp("dashboard")
    port = free_port()
    raw = plant_raw(tmp, stack, dashboard={"port": port, "token": TOKEN})
    settings = Settings(**raw)
    config = write_config(tmp, raw)
    prepare_topics(settings)
    seed_store(settings, int(time.time() * US))
    proc_stats = RunStats("processor", settings.pipeline.state_dir)  # what the health panel reads
    proc_stats.add("frames_in", 10)
    proc_stats.add("dead_letters", 2)
    proc_stats.flush()
    log = tmp / "dashboard.log"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PLANTSTREAM_") and k not in ("KAFKA_BOOTSTRAP", "SCHEMA_REGISTRY_URL")
    }
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "plantstream", "--config", str(config), "dashboard"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    d = Dash(settings, f"http://127.0.0.1:{port}", log)

    def live() -> bool:
        try:
            return bool(d.state()["health"]["live"]["ready"])
        except httpx.HTTPError:
            return False

    try:
        wait_for(live, 30, 0.2, "the dashboard's live feed")
        yield d
    finally:
        stop(proc, 15)
        text = log.read_text(errors="replace")
        assert TOKEN not in text, "the access token must never be logged"


def test_api_token_history_sse_and_ack(dash: Dash) -> None:
    s = dash.settings
    # the token guards every endpoint
    for path in ("/", "/api/plant", "/api/state", "/api/history?asset=" + PRESS, "/api/events", "/static/app.js"):
        assert httpx.get(dash.base + path, timeout=5).status_code == 401, path
    assert httpx.get(dash.base + "/api/state", headers={"Authorization": "Bearer nope"}, timeout=5).status_code == 401
    assert httpx.post(dash.base + "/api/alerts/stored-1/ack", timeout=5).status_code == 401
    # ?token= once: redirected to the same page without it, and a cookie from then on
    r = httpx.get(dash.base + "/?token=" + TOKEN, timeout=5)
    assert r.status_code == 302 and r.headers["location"] == "/"
    with httpx.Client(base_url=dash.base, cookies=r.cookies, timeout=5) as browserish:
        assert browserish.get("/api/plant").status_code == 200

    plant = dash.get("/api/plant").json()
    assert {a["path"] for a in plant["assets"]} == {a.path for a in s.plant.assets}
    assert plant["tree"][0]["path"] == "demo"

    # history from the store, downsampled
    h = dash.get("/api/history", params={"asset": PRESS, "hours": 24}).json()
    oil = h["trends"]["oil_temperature"]
    assert 0 < len(oil["t"]) <= s.pipeline.dashboard.history_points
    assert min(oil["min"]) == 40.0 and max(oil["max"]) == 49.0
    assert h["downtime"] == [{"reason": "die change", "seconds": 240.0}, {"reason": "jam", "seconds": 60.0}]
    assert dash.get("/api/history", params={"asset": "no.such.asset.at.all"}).status_code == 404

    st = dash.state()
    assert st["oee"][PRESS]["oee"] == pytest.approx(0.7125)
    assert [a["alert_id"] for a in st["alerts"]] == ["stored-1"]
    assert not st["status"][PUMP]["online"]  # never seen: offline
    proc = next(c for c in st["health"]["components"] if c["component"] == "processor")
    assert proc["dead_letters"] == 2

    # SSE: a snapshot first, then the frame published after it
    events: list[tuple[str, Any]] = []
    with httpx.stream(
        "GET", dash.base + "/api/events", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=httpx.Timeout(10.0)
    ) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        event = ""
        deadline = time.monotonic() + 20
        for line in resp.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                events.append((event, json.loads(line[6:])))
                if event == "snapshot":
                    publish_frame(s, PRESS, {"oil_temperature": 63.25, "hydraulic_pressure": 151.5})
                if event == "frames" and any(
                    u["asset"] == PRESS and u["values"].get("oil_temperature") == 63.25 for u in events[-1][1]
                ):
                    break
            assert time.monotonic() < deadline, f"no frames event within 20 s; got {[e for e, _ in events]}"
    assert events[0][0] == "snapshot"
    st = dash.state()
    assert st["values"][PRESS]["values"]["hydraulic_pressure"] == 151.5
    assert st["status"][PRESS]["online"]

    # a live alert, acknowledged through the API; the acknowledgement is on disk
    aid = "api-" + uuid.uuid4().hex[:8]
    publish_alert(s, aid)
    wait_for(lambda: any(a["alert_id"] == aid for a in dash.state()["alerts"]), 15, 0.2, "the live alert")
    r = httpx.post(
        f"{dash.base}/api/alerts/{aid}/ack",
        headers={"Authorization": f"Bearer {TOKEN}"},
        json={"by": "tester"},
        timeout=5,
    )
    assert r.status_code == 200 and r.json()["ack"]["acked_by"] == "tester"
    assert next(a for a in dash.state()["alerts"] if a["alert_id"] == aid)["ack"]["acked_by"] == "tester"
    acks = AckStore(s.state_path("dashboard.db"))
    assert acks.all()[aid]["acked_by"] == "tester"
    acks.close()
    # cleared: no longer active
    publish_alert(s, aid, "CLEARED")
    wait_for(lambda: all(a["alert_id"] != aid for a in dash.state()["alerts"]), 15, 0.2, "the alert to clear")
    assert (
        httpx.post(
            f"{dash.base}/api/alerts/unknown/ack", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
        ).status_code
        == 404
    )


def test_browser_live_value_alert_and_ack(dash: Dash) -> None:
    pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright

    from plantstream.bench.dashboard import launch_chromium

    s = dash.settings
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(15_000)
            page.goto(dash.base + "/?token=" + TOKEN)  # once with the token; the cookie carries it after
            assert "token" not in page.url
            for a in s.plant.assets:
                page.wait_for_selector(f".leaf[data-asset='{a.path}']")
            page.wait_for_selector("body[data-live='1']")
            page.wait_for_selector("body[data-charts-drawn='1']")
            assert page.locator("svg.trend").count() >= 2  # process values + anomaly score
            # the anomaly model's readiness beside its chart (no scores yet, warming up, or ready)
            label = page.locator(".trend-label span", has_text="anomaly score / threshold").inner_text()
            assert any(w in label for w in ("no anomaly scores yet", "warming up", "ready")), label
            page.screenshot(path=str(ARTIFACTS / "dashboard-loaded.png"), full_page=True)

            # a live value: publish a frame, see the number change
            cell = "#values tr[data-tag='oil_temperature'] .value"
            publish_frame(s, PRESS, {"oil_temperature": 88.5})
            page.wait_for_function(f"document.querySelector(\"{cell}\")?.textContent === '88.500'")
            page.wait_for_selector(f".leaf.online[data-asset='{PRESS}']")
            assert page.locator(f".leaf.offline[data-asset='{PUMP}']").count() == 1
            publish_frame(s, PRESS, {"oil_temperature": 91.25})
            page.wait_for_function(f"document.querySelector(\"{cell}\")?.textContent === '91.250'")
            page.screenshot(path=str(ARTIFACTS / "dashboard-live-value.png"), full_page=True)

            # an alert appears and is acknowledged; the acknowledgement survives a reload
            aid = "ui-" + uuid.uuid4().hex[:8]
            publish_alert(s, aid)
            row = f"tr.alert[data-alert-id='{aid}']"
            page.wait_for_selector(f"{row} button.ack")
            page.screenshot(path=str(ARTIFACTS / "dashboard-alert.png"), full_page=True)
            page.click(f"{row} button.ack")
            page.wait_for_selector(f"{row}.acked")
            page.reload()
            page.wait_for_selector("body[data-live='1']")
            page.wait_for_selector(f"{row}.acked")
            assert page.locator(f"{row} button.ack").count() == 0
            page.screenshot(path=str(ARTIFACTS / "dashboard-acked.png"), full_page=True)
        finally:
            browser.close()
    acks = AckStore(s.state_path("dashboard.db"))
    assert aid in acks.all()
    acks.close()
    # without the token, a fresh browser gets 401
    assert httpx.get(dash.base + "/", timeout=5).status_code == 401
