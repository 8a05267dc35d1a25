"""`plantstream dashboard`: aiohttp glue between the live feed, the store's history and the browsers.

Routes (all behind the optional token):
  GET  /                      the page (static files ship in this package: no CDN)
  GET  /api/plant             asset tree, assets, tags
  GET  /api/state             values, online/offline, OEE, active alerts, pipeline health
  GET  /api/history?asset=&hours=   downsampled trends, anomaly score/threshold, downtime by reason
  POST /api/alerts/{id}/ack   acknowledge an alert (persisted in state_dir/dashboard.db)
  GET  /api/events            Server-Sent Events: snapshot, then frames, oee, alert, ack, health, status
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from plantstream.core import runstats
from plantstream.core.config import Settings
from plantstream.core.shutdown import Deadline
from sinks.dashboard import auth
from sinks.dashboard.acks import AckStore
from sinks.dashboard.history import SqlHistory, open_history
from sinks.dashboard.live import LiveFeed
from sinks.dashboard.viewmodel import (
    US,
    AlertBoard,
    asset_status,
    bucket_us,
    downtime_by_reason,
    frame_update,
    oee_view,
    pipeline_health,
    plant_view,
    scan_intervals,
    trend_tags,
)

log = logging.getLogger("sinks.dashboard")
STATIC = Path(__file__).parent / "static"
FLUSH_S = 0.25  # frames and anomaly scores are coalesced per asset and pushed at most this often
HEALTH_S = 2.0
QUEUE_MAX = 500  # events queued per browser; a browser that falls this far behind is dropped (it reconnects)


def now_us() -> int:
    return int(time.time() * US)


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False, default=str)


class PathOnlyAccessLogger(AbstractAccessLogger):
    """Access log without query strings: a token given as ?token= must never reach a log file."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s %s %.1fms", request.method, request.path, response.status, time * 1000)


class Hub:
    """The dashboard's live state and its browsers; runs on the event loop (the feed thread posts into it)."""

    def __init__(self, settings: Settings, history: SqlHistory, acks: AckStore) -> None:
        self.settings = settings
        self.cfg = settings.pipeline.dashboard
        self.history = history
        self.acks = acks
        self.plant = plant_view(settings)
        self.assets = [a["path"] for a in self.plant["assets"]]
        self.intervals = scan_intervals(settings)
        w = settings.pipeline.windows
        # KPI windows stand in for raw samples where they are no wider than a bucket (hopping: the hop)
        self.kpi_window_us = w.kpi_window_s * US
        self.values: dict[str, dict[str, Any]] = {}
        self.last_seen: dict[str, int] = {}
        self.oee: dict[str, dict[str, Any]] = {}
        self.anomaly: dict[str, dict[str, Any]] = {}
        self.board = AlertBoard()
        self.health: list[dict[str, Any]] = []
        self._prev_stats: dict[str, dict[str, Any]] = {}
        self.subscribers: set[asyncio.Queue[str | None]] = set()
        self._pending_frames: dict[str, dict[str, Any]] = {}
        self._pending_anomaly: dict[str, dict[str, Any]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.feed: LiveFeed | None = None

    # --- seeding and feeding ---

    def seed(self) -> None:
        """From the store: newest frame time per asset, latest OEE, open alerts (runs in a thread at start)."""
        self.last_seen.update(self.history.last_seen(now_us() - 3600 * US))
        for rec in self.history.latest_oee():
            self.oee[rec["asset"]] = oee_view(rec)
        for rec in self.history.open_alerts():
            self.board.apply(rec)

    def deliver_threadsafe(self, kind: str, record: dict[str, Any]) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.take, kind, record)

    def take(self, kind: str, record: dict[str, Any]) -> None:
        if kind == "frame":
            upd = frame_update(record)
            asset = upd["asset"]
            merged = self.values.setdefault(asset, {"values": {}, "quality": {}, "time": 0})
            merged["values"].update(upd["values"])
            merged["quality"].update(upd["quality"])
            merged["time"] = max(merged["time"], upd["time"])
            if not upd["historical"]:
                self.last_seen[asset] = max(self.last_seen.get(asset, 0), upd["time"])
            pend = self._pending_frames.get(asset)
            if pend is None:
                self._pending_frames[asset] = upd
            else:  # coalesce: newest value per tag since the last push
                pend["values"].update(upd["values"])
                pend["quality"].update(upd["quality"])
                pend["time"] = max(pend["time"], upd["time"])
        elif kind == "anomaly":
            a = {k: record[k] for k in ("asset", "time", "model", "score", "threshold", "is_anomaly", "warming_up")}
            self.anomaly[a["asset"]] = a
            self._pending_anomaly[a["asset"]] = a
        elif kind == "oee":
            view = oee_view(record)
            old = self.oee.get(view["asset"])
            if old is None or old["window_end"] <= view["window_end"]:
                self.oee[view["asset"]] = view
                self.broadcast("oee", view)
        elif kind == "alert":
            if self.board.apply(record):
                current = self.board.get(record["alert_id"]) or {}
                ack = self.acks.all([record["alert_id"]]).get(record["alert_id"])
                self.broadcast("alert", {**current, "ack": ack})
        elif kind == "kpi":
            self.broadcast("kpi", {k: record.get(k) for k in ("asset", "tag", "window_end", "mean", "min", "max")})

    def broadcast(self, event: str, data: Any) -> None:
        msg = f"event: {event}\ndata: {dumps(data)}\n\n"
        for q in list(self.subscribers):
            try:
                q.put_nowait(msg)
            except asyncio.QueueFull:
                self.subscribers.discard(q)
                with contextlib.suppress(asyncio.QueueFull):
                    q.put_nowait(None)  # end that stream; the browser's EventSource reconnects

    # --- periodic work ---

    async def flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            if self._pending_frames:
                self.broadcast("frames", list(self._pending_frames.values()))
                self._pending_frames = {}
            if self._pending_anomaly:
                self.broadcast("anomalies", list(self._pending_anomaly.values()))
                self._pending_anomaly = {}

    async def health_loop(self) -> None:
        while True:
            snaps = await asyncio.to_thread(runstats.read_all, self.settings.pipeline.state_dir)
            snaps.pop("dashboard", None)
            self.health = pipeline_health(snaps, self._prev_stats, time.time())
            self._prev_stats = snaps
            self.broadcast("health", self.health_view())
            self.broadcast("status", self.status())
            await asyncio.sleep(HEALTH_S)

    # --- views ---

    def status(self) -> dict[str, dict[str, Any]]:
        return asset_status(self.cfg, self.intervals, self.last_seen, self.assets, now_us())

    def health_view(self) -> dict[str, Any]:
        feed = self.feed
        return {
            "components": self.health,
            "live": {
                "ready": bool(feed and feed.ready.is_set()),
                "received": dict(feed.counts) if feed else {},
                "undecodable": feed.undecodable if feed else 0,
                "browsers": len(self.subscribers),
            },
        }

    def state(self) -> dict[str, Any]:
        return {
            "now": now_us(),
            "status": self.status(),
            "values": self.values,
            "oee": self.oee,
            "anomaly": self.anomaly,
            "alerts": self.board.active(self.acks.all()),
            "health": self.health_view(),
        }

    def history_view(self, asset: str, hours: float) -> dict[str, Any]:
        end = now_us()
        start = end - int(hours * 3600 * US)
        width = bucket_us(end - start, self.cfg.history_points)
        start -= start % width  # buckets on whole multiples of their width: stable as the page refreshes
        return {
            "asset": asset,
            "start": start,
            "end": end,
            "bucket_us": width,
            "trends": self.history.trends(
                asset, trend_tags(self.settings, asset), start, end + 1, width, self.kpi_window_us
            ),
            "anomaly": self.history.anomaly(asset, start, end + 1, width),
            "downtime": downtime_by_reason(self.history.downtime(asset, start)),
        }


HUB: web.AppKey[Hub] = web.AppKey("hub", Hub)


async def index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


async def api_plant(request: web.Request) -> web.Response:
    return web.json_response(request.app[HUB].plant, dumps=dumps)


async def api_state(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    return web.json_response(hub.state(), dumps=dumps)  # on the loop: the live dicts change only here


async def api_history(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    asset = request.query.get("asset", "")
    if asset not in hub.assets:
        return web.json_response({"error": f"unknown asset {asset!r}; use one of plant.assets"}, status=404)
    try:
        hours = float(request.query.get("hours", hub.cfg.history_hours))
    except ValueError:
        return web.json_response({"error": "hours must be a number, e.g. hours=24"}, status=400)
    if not 0 < hours <= 24 * 31:
        return web.json_response({"error": "hours must be > 0 and <= 744 (31 days)"}, status=400)
    return web.json_response(await asyncio.to_thread(hub.history_view, asset, hours), dumps=dumps)


async def api_ack(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    alert_id = request.match_info["alert_id"]
    if hub.board.get(alert_id) is None:
        return web.json_response({"error": f"no alert {alert_id!r} is known to this dashboard"}, status=404)
    body: dict[str, Any] = {}
    if request.can_read_body:
        with contextlib.suppress(ValueError):
            body = await request.json()
    ack = await asyncio.to_thread(hub.acks.ack, alert_id, str(body.get("by", "")), str(body.get("note", "")))
    hub.broadcast("ack", {"alert_id": alert_id, "ack": ack})
    return web.json_response({"alert_id": alert_id, "ack": ack})


async def api_events(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await resp.prepare(request)
    q: asyncio.Queue[str | None] = asyncio.Queue(QUEUE_MAX)
    hub.subscribers.add(q)  # before the snapshot, so nothing falls between the two
    try:
        snapshot = hub.state()
        await resp.write(f"retry: 2000\nevent: snapshot\ndata: {dumps(snapshot)}\n\n".encode())
        while True:
            try:
                msg = await asyncio.wait_for(q.get(), timeout=15.0)
            except TimeoutError:
                await resp.write(b": keep-alive\n\n")  # proxies close silent connections
                continue
            if msg is None:
                break
            await resp.write(msg.encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        hub.subscribers.discard(q)
    return resp


def build_app(settings: Settings, hub: Hub) -> web.Application:
    token = settings.pipeline.dashboard.token
    app = web.Application(middlewares=[auth.middleware(token.get_secret_value() if token else None)])
    app[HUB] = hub
    app.router.add_get("/", index)
    app.router.add_get("/api/plant", api_plant)
    app.router.add_get("/api/state", api_state)
    app.router.add_get("/api/history", api_history)
    app.router.add_post("/api/alerts/{alert_id}/ack", api_ack)
    app.router.add_get("/api/events", api_events)
    app.router.add_static("/static/", STATIC)
    return app


def url(settings: Settings) -> str:
    cfg = settings.pipeline.dashboard
    host = "127.0.0.1" if cfg.host in ("0.0.0.0", "::", "") else cfg.host
    return f"http://{host}:{cfg.port}/"


async def serve(settings: Settings, stop: asyncio.Event, live: bool = True) -> None:
    """Run until `stop` is set. `live=False` serves history only (benchmarks)."""
    cfg = settings.pipeline.dashboard
    acks = AckStore(settings.state_path("dashboard.db"))
    history = open_history(settings)
    hub = Hub(settings, history, acks)
    hub.loop = asyncio.get_running_loop()
    await asyncio.to_thread(hub.seed)
    if live:
        hub.feed = LiveFeed(settings, hub.deliver_threadsafe)
        hub.feed.start()
    runner = web.AppRunner(
        build_app(settings, hub), access_log_class=PathOnlyAccessLogger, handler_cancellation=True, shutdown_timeout=1.0
    )
    await runner.setup()
    site = web.TCPSite(runner, cfg.host, cfg.port)
    tasks = [asyncio.create_task(hub.flush_loop()), asyncio.create_task(hub.health_loop())]
    try:
        await site.start()
        log.info("dashboard on %s%s", url(settings), " (token required)" if cfg.token else "")
        await stop.wait()
    finally:
        for t in tasks:
            t.cancel()
        for q in list(hub.subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(None)
        await runner.cleanup()
        if hub.feed is not None:
            await asyncio.to_thread(hub.feed.close)
        history.close()
        acks.close()


def main(settings: Settings, host: str | None = None, port: int | None = None, live: bool = True) -> None:
    if host is not None or port is not None:
        cfg = settings.pipeline.dashboard.model_copy(
            update={k: v for k, v in (("host", host), ("port", port)) if v is not None}
        )
        settings = settings.model_copy(update={"pipeline": settings.pipeline.model_copy(update={"dashboard": cfg})})

    # the signal asks for an orderly stop; with Kafka gone, closing the live feed's consumer may wait for good
    deadline = Deadline("the dashboard", settings.pipeline.shutdown_timeout_s)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            stop.set()
            deadline.arm()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        await serve(settings, stop, live=live)

    asyncio.run(run())
