"""`plantstream dashboard` over real sockets: a real process, the real broker, a real SQLite store, and Debian's
chromium driven by Playwright (one browser for the module). Screenshots land in build/test-artifacts/.

The dashboard runs with a users file (ann: operator, vic: viewer) and a shared token (a viewer, as by default),
a shift calendar built around the time the test runs (a shift from 2 h ago with a planned break over now), and
a store seeded with two hours of press history: samples, machine states, OEE windows (those in the break
without planned busy time), a closed shift, anomaly scores from warm-up to an alarm, and an open alert.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

import schemas
from plantstream.core import kafka_clients, topics
from plantstream.core.config import Settings
from plantstream.core.runstats import RunStats
from sinks.dashboard import users
from sinks.stores.registry import open_store
from tests.conftest import REPO, Stack, free_port, plant_raw, write_config
from tests.helpers import as_batch, consume_all, decoder, prepare_topics, produce, stop, wait_for
from tests.system import require

pytestmark = pytest.mark.integration

PRESS = "demo.springfield.stamping.line1.press1"
CNC = "demo.springfield.machining.line2.cnc1"
PUMP = "demo.springfield.utilities.water.pump1"
TOKEN = "tok-" + uuid.uuid4().hex
PASSWORDS = {"ann": "ann-" + uuid.uuid4().hex[:12], "vic": "vic-" + uuid.uuid4().hex[:12]}
ARTIFACTS = REPO / "build" / "test-artifacts"
US = 1_000_000
MIN = 60 * US


@dataclass
class Dash:
    settings: Settings
    base: str
    log: Path
    config: Path
    t0: int  # when the store was seeded
    pid: int

    def get(self, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {TOKEN}", **kw.pop("headers", {})}
        return httpx.get(self.base + path, headers=headers, timeout=10, **kw)

    def state(self, asset: str | None = None) -> dict[str, Any]:
        r = self.get("/api/state", params={"asset": asset} if asset else None)
        r.raise_for_status()
        return dict(r.json())

    @contextmanager
    def login(self, name: str) -> Iterator[httpx.Client]:
        with httpx.Client(base_url=self.base, timeout=10) as c:
            r = c.post("/api/login", json={"name": name, "password": PASSWORDS[name]})
            assert r.status_code == 200, r.text
            yield c


def shifts_around(now_us: int) -> list[dict[str, Any]]:
    """A shift from 2 h ago to 2 h ahead with a planned break from 10 min ago to 10 min ahead (UTC)."""
    t = datetime.fromtimestamp(now_us / US, UTC).replace(second=0, microsecond=0)

    def hm(d: datetime) -> str:
        return d.strftime("%H:%M")

    brk = {"start": hm(t - timedelta(minutes=10)), "end": hm(t + timedelta(minutes=10))}
    return [{"name": "test", "start": hm(t - timedelta(hours=2)), "end": hm(t + timedelta(hours=2)), "breaks": [brk]}]


def state_at(t: int, now: int) -> int:
    """Press machine state: running, an unplanned stop 40-30 min ago, planned stop in the break (10 min)."""
    if now - 40 * MIN <= t < now - 30 * MIN:
        return 4
    if t >= now - 10 * MIN:
        return 3
    return 1


def oee_record(ws: int, we: int, pbt: float, apt: float, pq: float, gq: float, shift: str = "") -> dict[str, Any]:
    return {
        "asset": PRESS,
        "window_start": ws,
        "window_end": we,
        "shift": shift,
        "planned_busy_time_s": pbt,
        "actual_production_time_s": apt,
        "produced_quantity": pq,
        "good_quantity": gq,
        "scrap_quantity": pq - gq,
        "availability": apt / pbt if pbt else None,
        "effectiveness": 2.0 * pq / apt if apt else None,
        "quality_ratio": gq / pq if pq else None,
        "oee": (apt / pbt) * (2.0 * pq / apt) * (gq / pq) if pbt and apt and pq else None,
        "scrap_ratio": (pq - gq) / pq if pq else None,
        "failures": 0,
        "mtbf_s": None,
        "mttr_s": None,
        "downtime_by_reason_s": {"4": 60.0 - apt} if pbt and apt < 60 else {},
    }


def seed_store(settings: Settings, now: int) -> None:
    frames = []
    for i in range(1440):  # 2 h, every 5 s
        t = now - (7200 - i * 5) * US
        samples = [{"tag": "state", "source_time": t, "value": state_at(t, now), "quality": "GOOD"}]
        if i % 2 == 0:
            samples.append({"tag": "oil_temperature", "source_time": t, "value": 40.0 + i // 2 % 10, "quality": "GOOD"})
        frames.append(
            {
                "asset": PRESS,
                "device": "press1-plc",
                "seq": i,
                "producer_id": "seed",
                "scan_time": t,
                "historical": False,
                "buffered": False,
                "samples": samples,
            }
        )
    for i in range(180):  # the CNC has three minutes of data
        t = now - (180 - i) * US
        frames.append(
            {
                "asset": CNC,
                "device": "cnc1-controller",
                "seq": i,
                "producer_id": "seed",
                "scan_time": t,
                "historical": False,
                "buffered": False,
                "samples": [{"tag": "spindle_speed", "source_time": t, "value": 9000.0 + i, "quality": "GOOD"}],
            }
        )
    minute0 = now - now % MIN
    oee = []
    for k in range(60, 0, -1):  # the last hour's one-minute windows; those in the break have no PBT
        ws = minute0 - k * MIN
        in_break = ws >= now - 10 * MIN + MIN
        oee.append(
            oee_record(ws, ws + MIN, 0.0, 0.0, 0.0, 0.0) if in_break else oee_record(ws, ws + MIN, 60, 50, 20, 19)
        )
    oee.append(oee_record(now - 26 * 3600 * US, now - 18 * 3600 * US, 27000, 25000, 10000, 9800, shift="test"))
    scores = [
        {
            "asset": PRESS,
            "time": now - (3600 - i * 10) * US,
            "model": "hotelling-t2/5",
            "score": 1.0 + (i % 7) / 10 + (9.0 if i == 300 else 0.0),
            "threshold": 5.0,
            "is_anomaly": i == 300,
            "warming_up": i < 120,
            "contributions": {},
        }
        for i in range(360)
    ]
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
        store.write(as_batch(frames, [], {"oee_window": oee, "alert": [stored_alert], "anomaly_score": scores}))
    finally:
        store.close()


def store_states(settings: Settings, value: int, t0: int, t1: int) -> None:
    """State samples every 5 s up to t1, as the storage sink would have written them."""
    frames = [
        {
            "asset": PRESS,
            "device": "press1-plc",
            "seq": t,
            "producer_id": "seed-late",
            "scan_time": t,
            "historical": False,
            "buffered": False,
            "samples": [{"tag": "state", "source_time": t, "value": value, "quality": "GOOD"}],
        }
        for t in range(t1, t0, -5 * US)
    ]
    store = open_store(settings)
    try:
        store.write(as_batch(frames, []))
    finally:
        store.close()


def frame(settings: Settings, asset: str, values: dict[str, Any], t: int | None = None) -> tuple[bytes, bytes]:
    codec = kafka_clients.registry(settings).codec(topics.subject(settings, topics.READINGS), schemas.READING_FRAME)
    t = int(time.time() * US) if t is None else t
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


def publish_frame(settings: Settings, asset: str, values: dict[str, Any], t: int | None = None) -> None:
    produce(settings, settings.topic(topics.READINGS), [frame(settings, asset, values, t)])


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


def processor_reports(settings: Settings) -> None:
    """A running stage's counters, as the health panel reads them (the file a live processor rewrites every 1 s)."""
    stats = RunStats("processor", settings.pipeline.state_dir)
    stats.add("frames_in", 10)
    stats.add("dead_letters", 2)
    stats.flush()


def clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PLANTSTREAM_") and k not in ("KAFKA_BOOTSTRAP", "SCHEMA_REGISTRY_URL")
    }


@pytest.fixture(scope="module")
def dash(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dash]:
    tmp = tmp_path_factory.mktemp("dashboard")
    port = free_port()
    now = int(time.time() * US)
    # no worker runs here: an alarm command waits 2 s for its answer (tests/integration/test_alarm_dashboard.py
    # has the worker, and acknowledges and shelves through the page)
    raw = plant_raw(
        tmp,
        stack,
        dashboard={"port": port, "token": TOKEN, "users_file": "users.yaml"},
        alarms={"command_timeout_s": 2},
    )
    raw["plant"]["shifts"] = shifts_around(now)
    settings = Settings(**raw)
    config = write_config(tmp, raw)
    for name, role in (("ann", "operator"), ("vic", "viewer")):
        users.upsert(Path(settings.pipeline.state_dir) / "users.yaml", name, role, PASSWORDS[name])
    prepare_topics(settings)
    seed_store(settings, now)
    processor_reports(settings)
    log = tmp / "dashboard.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "plantstream", "--config", str(config), "dashboard"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=clean_env(),
            start_new_session=True,
        )
    d = Dash(settings, f"http://127.0.0.1:{port}", log, config, now, proc.pid)

    def live() -> bool:
        try:
            return d.state()["health"]["feed"]["state"] == "live"
        except httpx.HTTPError:
            return False

    try:
        wait_for(live, 30, 0.2, "the dashboard's live feed")
        yield d
    finally:
        stop(proc, 15)
        text = log.read_text(errors="replace")
        assert TOKEN not in text, "the access token must never be logged"
        assert not any(p in text for p in PASSWORDS.values()), "a password must never be logged"


@pytest.fixture(scope="module")
def browser(dash: Dash) -> Iterator[Any]:
    require("chromium")  # playwright drives Debian's chromium (no `playwright install`)
    from playwright.sync_api import sync_playwright

    from plantstream.bench.dashboard import launch_chromium

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        b = launch_chromium(pw)
        try:
            yield b
        finally:
            b.close()


def sign_in(browser: Any, dash: Dash, name: str, password: str) -> Any:
    """A fresh browser context on the sign-in page (no session yet), the form sent; returns the page."""
    context = browser.new_context(viewport={"width": 1600, "height": 1100})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(dash.base + "/")
    assert page.url.endswith("/login")  # no session: the sign-in page
    page.fill("#name", name)
    page.fill("#password", password)
    page.click("button[type=submit]")
    return page


def signed_in_page(browser: Any, dash: Dash, name: str) -> Any:
    page = sign_in(browser, dash, name, PASSWORDS[name])
    page.wait_for_selector("body[data-live='1']")
    return page


# --- the API ------------------------------------------------------------------------------------


def test_refuses_other_addresses_without_authentication(tmp_path: Path) -> None:
    raw = plant_raw(tmp_path, dashboard={"host": "0.0.0.0", "port": free_port()})
    config = write_config(tmp_path, raw)
    out = subprocess.run(
        [sys.executable, "-m", "plantstream", "--config", str(config), "dashboard", "--no-live"],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
    )
    assert out.returncode == 2
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "0.0.0.0" in lines[0] and "plantstream users add" in lines[0], out.stderr


def test_who_may_do_what(dash: Dash) -> None:
    # nothing without authentication; the page sends people to sign in
    for path in ("/api/plant", "/api/state", "/api/history?asset=" + PRESS, "/api/events"):
        assert httpx.get(dash.base + path, timeout=5).status_code == 401, path
    for path in ("/", "/static/app.js"):
        r = httpx.get(dash.base + path, timeout=5)
        assert r.status_code == 302 and r.headers["location"] == "/login", path
    assert httpx.get(dash.base + "/login", timeout=5).status_code == 200
    assert httpx.get(dash.base + "/api/state", headers={"Authorization": "Bearer nope"}, timeout=5).status_code == 401
    # the shared token: a machine client that reads, and is refused actions (viewer unless configured)
    assert dash.get("/api/me").json()["user"] == {"name": "token", "role": "viewer", "via": "token", "can": ["view"]}
    r = httpx.post(
        f"{dash.base}/api/alerts/stored-1/ack", headers={"Authorization": f"Bearer {TOKEN}"}, json={}, timeout=5
    )
    assert r.status_code == 403 and "viewer" in r.json()["error"]
    # ?token= once: redirected to the same page without it, and a cookie from then on
    r = httpx.get(dash.base + "/?token=" + TOKEN, timeout=5)
    assert r.status_code == 302 and r.headers["location"] == "/"
    with httpx.Client(base_url=dash.base, cookies=r.cookies, timeout=5) as browserish:
        assert browserish.get("/api/plant").status_code == 200
    # sign-in: a viewer reads but may not acknowledge; an operator acknowledges as themself
    with dash.login("vic") as vic:
        assert vic.get("/api/me").json()["user"]["role"] == "viewer"
        assert vic.post("/api/alerts/stored-1/ack", json={}).status_code == 403
    with dash.login("ann") as ann:
        r = ann.post("/api/alerts/stored-1/ack", json={"by": "someone else", "note": "checked the cooler"})
        # the acknowledgement is a command on Kafka for the worker; none runs in this module: unanswered
        assert r.status_code == 504 and "is `plantstream process` running?" in r.json()["error"], r.text
        r = ann.post("/api/alerts/stored-1/ack", content="x", headers={"Content-Type": "text/plain"})
        assert r.status_code == 415  # actions are JSON: a cross-site form cannot send one
        assert ann.post("/api/logout", json={}).status_code == 200
        assert ann.get("/api/state").status_code == 401  # the session is gone
    # the command carries the signed-in user, never a name the request brings
    (cmd,) = [
        decoder(dash.settings, schemas.ALARM_COMMAND).decode(m.value())
        for m in consume_all(dash.settings, dash.settings.topic(topics.ALARM_COMMANDS), 1, timeout=10)
    ]
    assert (cmd["action"], cmd["user"], cmd["role"], cmd["comment"]) == (
        "ACKNOWLEDGE",
        "ann",
        "operator",
        "checked the cooler",
    )
    assert (cmd["asset"], cmd["rule"], cmd["alert_id"], cmd["source"]) == (
        PRESS,
        "press-oil-hot",
        "stored-1",
        "dashboard",
    )


def test_trend_ranges_follow_the_data(dash: Dash) -> None:
    h = dash.get("/api/history", params={"asset": PRESS}).json()  # auto: two hours of data -> 8 h
    assert h["range"]["name"] == "8h" and h["range"]["fitted"] and h["bucket_us"] == 60 * US
    oil = h["trends"]["oil_temperature"]
    assert 0 < len(oil["t"]) <= 600 and min(oil["min"]) == 40.0 and max(oil["max"]) == 49.0
    cnc = dash.get("/api/history", params={"asset": CNC}).json()  # three minutes of data -> 15 min
    assert cnc["range"]["name"] == "15m" and cnc["bucket_us"] == 2 * US
    assert len(cnc["trends"]["spindle_speed"]["t"]) >= 80
    day = dash.get("/api/history", params={"asset": PRESS, "range": "24h"}).json()
    assert day["bucket_us"] == 300 * US and not day["range"]["fitted"]
    lo, hi = dash.t0 - 30 * MIN, dash.t0 - 20 * MIN
    custom = dash.get("/api/history", params={"asset": PRESS, "range": "custom", "start": lo, "end": hi}).json()
    assert custom["bucket_us"] == US and all(lo - US <= t < hi for t in custom["trends"]["oil_temperature"]["t"])
    an = h["anomaly"]
    assert any(an["warming"]) and not an["warming"][-1] and sum(an["anomaly"]) == 1  # warm-up, then one alarm
    assert dash.get("/api/history", params={"asset": PRESS, "range": "fortnight"}).status_code == 400
    assert dash.get("/api/history", params={"asset": "no.such.asset.at.all"}).status_code == 404


def test_shift_timeline_and_oee_reasons(dash: Dash) -> None:
    sh = dash.get("/api/shift", params={"asset": PRESS}).json()
    assert sh["shift"]["name"] == "test" and [m["kind"] for m in sh["marks"]] == ["BREAK"]
    segs = [s for s in sh["timeline"] if not (s["state"] == "NO_DATA" and s["start"] == sh["shift"]["start"])]
    assert [s["state"] for s in segs[:4]] == ["RUNNING", "UNPLANNED_STOP", "RUNNING", "PLANNED_STOP"]
    stop_seg = segs[1]
    assert abs(stop_seg["start"] - (dash.t0 - 40 * MIN)) <= 5 * US and stop_seg["reason"] == "4"
    # this shift so far: summed times and counts over its windows (those of the break add no PBT)
    o = sh["oee"]
    assert o["windows"] >= 59 and o["availability"] == pytest.approx(50 / 60)
    assert o["quality"] == pytest.approx(19 / 20) and o["oee"] == pytest.approx(
        2.0 * o["good_quantity"] / o["planned_busy_time_s"]
    )
    assert [r["name"] for r in sh["last_shifts"]] == ["test"] and sh["last_shifts"][0]["oee"] is not None
    # the newest window lies in the planned break: undefined, and the page is told why
    st = dash.state(PRESS)
    w = st["oee"]
    assert w["availability"] is None and w["reasons"]["availability"] == "planned break: no planned busy time"
    assert w["reasons"]["oee"] == "planned break: no planned busy time"
    assert not st["status"][PUMP]["online"]  # never seen: offline


def test_live_values_state_counter_rates_and_health(dash: Dash) -> None:
    s = dash.settings
    events: list[tuple[str, Any]] = []
    t = int(time.time() * US)
    with httpx.stream(
        "GET",
        dash.base + "/api/events",
        params={"asset": PRESS},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=httpx.Timeout(10.0),
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
                    for k, total in enumerate((100, 101, 103)):  # counter totals 1 s apart
                        values = {"strokes_total": total, "state": 3, "oil_temperature": 63.25}
                        publish_frame(s, PRESS, values, t - (2 - k) * US)
                    publish_frame(s, CNC, {"spindle_speed": 1.0})  # another asset: not on this stream
                got = {e for e, _ in events}
                if {"frames", "machine", "tick"} <= got and any(
                    e == "frames" and d[0]["values"].get("strokes_total") == 103 for e, d in events
                ):
                    break
            assert time.monotonic() < deadline, f"no frames within 20 s; got {[e for e, _ in events]}"
    assert events[0][0] == "snapshot"
    assert all(d[0]["asset"] == PRESS for e, d in events if e == "frames")
    machine = next(d for e, d in events if e == "machine")
    assert machine["state"] == "PLANNED_STOP" and machine["reason"] == "3" and machine["since"] == t - 2 * US
    tick = next(d for e, d in events if e == "tick")
    assert tick["feed"]["state"] == "live"
    processor_reports(s)
    time.sleep(3.5)  # the dashboard samples the pipeline every 3 s
    st = dash.state(PRESS)
    assert st["live"]["rates"]["strokes_total"] == pytest.approx(3 / 2 * 60)  # parts per minute
    assert st["live"]["values"]["values"]["oil_temperature"] == 63.25 and st["status"][PRESS]["online"]
    # pipeline health: the numbers `plantstream status` prints
    health = st["health"]
    proc = next(c for c in health["stages"] if c["component"] == "processor")
    assert proc["dead_letters"] == 2 and proc["state"] == "running" and proc["group"].endswith("-processor")
    out = subprocess.run(
        [sys.executable, "-m", "plantstream", "--config", str(dash.config), "status", "--json"],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    by_name = {t["name"]: t["messages"] for t in status["topics"]}
    assert {t["name"]: t["messages"] for t in dash.state()["health"]["topics"]} == by_name
    assert [(c["component"], c["state"], c["group"]) for c in status["stages"]] == [
        (c["component"], c["state"], c["group"]) for c in health["stages"]
    ]


# --- the browser --------------------------------------------------------------------------------


def test_browser_operator_trends_state_oee_and_ack(dash: Dash, browser: Any) -> None:
    s = dash.settings
    now = int(time.time() * US)
    store_states(s, 3, dash.t0, now)  # the planned stop goes on, as the storage sink would have stored it
    publish_frame(s, PRESS, {"state": 3, "strokes_total": 200}, now)
    page = signed_in_page(browser, dash, "ann")
    try:
        assert page.inner_text("#who") == "ann · operator"
        for a in s.plant.assets:
            page.wait_for_selector(f".leaf[data-asset='{a.path}']")
        page.wait_for_selector("body[data-charts-drawn='1']")
        # trends: fitted to two hours of data, ranges switch the bucket size
        assert "last 8 h · 1 min buckets · fitted" in page.inner_text("#trend-range")
        page.click(".range-btn[data-range='15m']")
        page.wait_for_function("document.querySelector('#trend-range').textContent.startsWith('last 15 min · 2 s')")
        assert page.get_attribute(".range-btn[data-range='15m']", "aria-pressed") == "true"
        page.click(".range-btn[data-range='8h']")
        page.wait_for_function("document.querySelector('#trend-range').textContent.startsWith('last 8 h · 1 min')")
        # hover: time and value in the chart's legend
        chart = page.locator(".chart[data-tag='oil_temperature'] .u-over")
        box = chart.bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + box["width"] * 0.85, box["y"] + box["height"] / 2)
        legend = page.locator(".chart[data-tag='oil_temperature'] .u-legend")
        page.wait_for_function(
            "document.querySelector(\".chart[data-tag='oil_temperature'] .u-value\").textContent.includes(':')"
        )
        assert any(ch.isdigit() for ch in legend.locator(".u-series").nth(3).inner_text())  # avg at the cursor
        # the anomaly trend: warm-up shaded and labelled, the alarm marked
        assert page.get_attribute("#trends", "data-warmup") == "1"
        assert page.get_attribute("#trends", "data-alarms") == "1"
        assert page.inner_text("#model-note") == "model ready"  # readiness beside the chart (its last score)
        page.screenshot(path=str(ARTIFACTS / "dashboard-trends-hover.png"), full_page=True)
        # machine state by name, since when; the shift's timeline; OEE with the reason a factor is undefined
        page.wait_for_selector("#machine-state[data-state='PLANNED_STOP']")
        assert page.inner_text("#state-since").startswith("since ")
        since = int(page.get_attribute("#state-since", "data-since") or 0)
        assert abs(since - (dash.t0 - 10 * MIN)) <= 5 * US  # from the stored history, not from the page load
        for st in ("RUNNING", "UNPLANNED_STOP", "PLANNED_STOP"):
            assert page.locator(f"#timeline .seg[data-state='{st}']").count() >= 1
        assert page.locator("#timeline .mark[data-kind='BREAK']").count() == 1
        assert "planned break: no planned busy time" in page.inner_text("#oee-window")
        assert page.locator("#oee .kpi[data-kpi='Availability'] .reason").count() == 0  # the shift so far is defined
        assert page.locator("#shifts tbody tr").count() == 2  # so far + the closed one
        # counters with their rate
        publish_frame(s, PRESS, {"strokes_total": 230}, now + 2 * US)
        wait_for(lambda: dash.state(PRESS)["live"]["values"]["values"]["strokes_total"] == 230, 10, 0.2, "the frame")
        rate = dash.state(PRESS)["live"]["rates"]["strokes_total"]
        assert rate > 0
        page.wait_for_function(
            f"document.querySelector(\"#values tr[data-tag='strokes_total'] .rate\").textContent === '{rate:.1f}/min'"
        )
        # health and the header tell the truth
        processor_reports(s)
        page.wait_for_selector("#health tr[data-component='processor'][data-state='running']")
        assert page.get_attribute("#conn", "data-state") == "live"
        page.screenshot(path=str(ARTIFACTS / "dashboard-state-oee.png"), full_page=True)
        # an alert: an operator may acknowledge or shelve it (through the worker: test_alarm_dashboard.py)
        aid = "ui-" + uuid.uuid4().hex[:8]
        publish_alert(s, aid)
        row = f"tr.alert[data-alert-id='{aid}']"
        page.wait_for_selector(f"{row} button.ack")
        assert page.locator(f"{row} button.shelve").count() == 1
        # the connection indicator follows the stream: a frozen server goes quiet -> stale; back -> live
        os.kill(dash.pid, signal.SIGSTOP)
        try:
            page.wait_for_selector("#conn[data-state='stale']", timeout=10_000)
            page.screenshot(path=str(ARTIFACTS / "dashboard-stale.png"))
        finally:
            os.kill(dash.pid, signal.SIGCONT)
        page.wait_for_selector("#conn[data-state='live']", timeout=10_000)
    finally:
        page.context.close()


def test_browser_viewer_and_wrong_password(dash: Dash, browser: Any) -> None:
    page = sign_in(browser, dash, "ann", "not-her-password")
    try:
        page.wait_for_function("document.querySelector('#error').textContent.length > 0")
        assert page.inner_text("#error") == "wrong name or password"
        page.screenshot(path=str(ARTIFACTS / "dashboard-login-failed.png"))
    finally:
        page.context.close()
    aid = "ro-" + uuid.uuid4().hex[:8]
    publish_alert(dash.settings, aid)
    page = signed_in_page(browser, dash, "vic")
    try:
        row = f"tr.alert[data-alert-id='{aid}']"
        page.wait_for_selector(row)
        assert page.locator(f"{row} button.ack").count() == 0 and "read-only" in page.inner_text(row)
        assert page.inner_text("#who") == "vic · viewer"
        page.click("#signout")
        page.wait_for_url("**/login")
    finally:
        page.context.close()


def test_sign_in_is_rate_limited(dash: Dash) -> None:
    """Last in the module: it locks this address out of signing in for the limiter's window."""
    name = "vic"
    with httpx.Client(base_url=dash.base, timeout=10) as c:
        codes = [c.post("/api/login", json={"name": name, "password": "wrong"}).status_code for _ in range(6)]
        # five failures from this address (the browser test's wrong password counts too), then refused
        assert 429 in codes and set(codes[: codes.index(429)]) == {401} and codes.index(429) <= 5
        r = c.post("/api/login", json={"name": name, "password": PASSWORDS[name]})
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0  # even the right password waits
        assert c.post("/api/login", data={"name": "ann"}).status_code == 415  # a form post: not JSON
