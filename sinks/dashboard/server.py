"""`plantstream dashboard`: aiohttp glue between the live feed, the store's history and the browsers.

Routes (who may call them: auth.py):
  GET  /, /login              the page and the sign-in page (static files ship in this package: no CDN)
  POST /api/login, /api/logout; GET /api/me   sign-in sessions; the caller's name, role and rights
  GET  /api/plant             plant name, asset tree and assets (tags come per asset, so 1,000 assets stay light)
  GET  /api/asset?asset=      one asset's tags, trend tags, machine-state and counter tags
  GET  /api/state[?asset=]    status of every asset, latest OEE, alerts, pipeline health; the asset's live values
  GET  /api/history?asset=&range=auto|15m|1h|8h|shift|24h|7d|custom[&start=&end=]   trends, anomaly, downtime
  GET  /api/shift?asset=      the current shift: state timeline, OEE so far, OEE of the last shifts
  POST /api/alerts/{id}/ack|shelve|unshelve   alarm actions, sent to the worker as commands (api_v1.py)
  GET  /api/v1/...            the read API of the plant's live model from Kafka, and alarm commands (api_v1.py)
  GET  /api/events[?asset=]   Server-Sent Events: snapshot, then tick, status, frames, machine, anomalies, oee,
                              alert, ack, alarm, health (frames and anomalies only of the asset asked for)

Who is online, and acknowledgements, come from Kafka (plant.state.v1, plant.alarm-state.v1: plant_model.py),
so every dashboard replica and IT system sees the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from confluent_kafka import KafkaError, KafkaException

from plantstream.core import kafka_clients, logs
from plantstream.core import machine_state as ms
from plantstream.core.config import Settings
from plantstream.core.pipeline_status import Sampler
from plantstream.core.shutdown import StopOnSignal
from sinks.dashboard import machine, oee_view, ranges
from sinks.dashboard.alarm_commands import CommandSender
from sinks.dashboard.api_v1 import AlarmApi
from sinks.dashboard.auth import Auth, ExposureError, check_exposure
from sinks.dashboard.history import SqlHistory, open_history
from sinks.dashboard.live import LiveFeed
from sinks.dashboard.plant_model import PlantModel
from sinks.dashboard.viewmodel import (
    US,
    AlertBoard,
    asset_status,
    asset_tags,
    downtime_by_reason,
    frame_update,
    offline_after_s,
    plant_view,
    scan_intervals,
    trend_tags,
)

log = logs.get(__name__)
STATIC = Path(__file__).parent / "static"
FLUSH_S = 0.25  # frames and anomaly scores are coalesced per asset and pushed at most this often
HEALTH_S = 3.0
TICK_S = 2.0  # every stream hears from the server this often, so the page can tell a live feed from a dead one
QUEUE_MAX = 500  # events queued per browser; a browser that falls this far behind is dropped (it reconnects)
LAST_SHIFTS = 6


def now_us() -> int:
    return int(time.time() * US)


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False, default=str)


class PathOnlyAccessLogger(AbstractAccessLogger):
    """Access log without query strings: a token given as ?token= must never reach a log file."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s %s %.1fms", request.method, request.path, response.status, time * 1000)


@dataclass(eq=False)
class Subscriber:
    queue: asyncio.Queue[str | None]
    asset: str | None  # frames, machine state and anomaly scores of this asset only


class Hub:
    """The dashboard's live state and its browsers; runs on the event loop (the feed thread posts into it)."""

    def __init__(self, settings: Settings, history: SqlHistory, model: PlantModel | None = None) -> None:
        self.settings = settings
        self.cfg = settings.pipeline.dashboard
        self.history = history
        self.model = model  # the plant's live model from Kafka (None: --no-live)
        self.plant = plant_view(settings)
        self.assets = [a["path"] for a in self.plant["assets"]]
        self.asset_cfg = {a.path: a for a in settings.plant.assets}
        self.tags = asset_tags(settings)
        self.machines = machine.asset_machines(settings)
        self.calendar = ms.calendar(settings.plant.shifts)
        self.intervals = scan_intervals(settings)
        w = settings.pipeline.windows
        # KPI windows stand in for raw samples where they are no wider than a bucket (hopping: the hop)
        self.kpi_window_us = w.kpi_window_s * US
        self.values: dict[str, dict[str, Any]] = {}
        self.last_seen: dict[str, int] = {}
        self.oee: dict[str, dict[str, Any]] = {}
        self.anomaly: dict[str, dict[str, Any]] = {}
        self.states = machine.StateTracker()
        self.counters = machine.CounterRates()
        self.board = AlertBoard()
        self.health: dict[str, Any] = {"stages": [], "topics": [], "error": None}
        self.subscribers: set[Subscriber] = set()
        self._pending_frames: dict[str, dict[str, Any]] = {}
        self._pending_anomaly: dict[str, dict[str, Any]] = {}
        self._online: dict[str, bool] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.feed: LiveFeed | None = None
        self.sampler: Sampler | None = None

    # --- seeding and feeding ---

    def seed(self) -> None:
        """From the store: newest frame time per asset, latest OEE, open alerts (runs in a thread at start)."""
        self.last_seen.update(self.history.last_seen(now_us() - 3600 * US))
        for rec in self.history.latest_oee():
            self.oee[rec["asset"]] = self.oee_window(rec)
        for rec in self.history.open_alerts():
            self.board.apply(rec)

    def deliver_threadsafe(self, kind: str, record: dict[str, Any]) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.take, kind, record)

    def take(self, kind: str, record: dict[str, Any]) -> None:
        if kind == "frame":
            self._take_frame(record)
        elif kind == "anomaly":
            a = {k: record[k] for k in ("asset", "time", "model", "score", "threshold", "is_anomaly", "warming_up")}
            self.anomaly[a["asset"]] = a
            self._pending_anomaly[a["asset"]] = a
        elif kind == "oee":
            if record.get("shift"):
                self.broadcast("shift", {"asset": record["asset"], "shift": record["shift"]})
                return  # a closed shift: pages showing the asset fetch its shift table again
            view = self.oee_window(record)
            old = self.oee.get(view["asset"])
            if old is None or old["window_end"] <= view["window_end"]:
                self.oee[view["asset"]] = view
                self.broadcast("oee", view, asset=view["asset"])
                self.broadcast("tree_oee", {view["asset"]: view["oee"]})
        elif kind == "alert":
            if self.board.apply(record):
                current = self.board.get(record["alert_id"]) or {}
                self.broadcast("alert", self.alert_row(current))
        elif kind == "alarm_state":
            # the alarm's current incident: its acknowledgement, shelf or suppression on the page's alert row
            shown = self.board.get(record["alert_id"]) if record.get("alert_id") else None
            if shown is not None:
                self.broadcast("alarm", self.alert_row(shown))
                ack = self.acks().get(record["alert_id"])
                if ack is not None:
                    self.broadcast("ack", {"alert_id": record["alert_id"], "ack": ack})
        elif kind == "asset_state":
            self._online.pop(record["asset"], None)  # the next status round announces a change
        elif kind == "kpi":
            self.broadcast("kpi", {k: record.get(k) for k in ("asset", "tag", "window_end", "mean", "min", "max")})

    def _take_frame(self, record: dict[str, Any]) -> None:
        upd = frame_update(record)
        asset = upd["asset"]
        merged = self.values.setdefault(asset, {"values": {}, "quality": {}, "time": 0})
        merged["values"].update(upd["values"])
        merged["quality"].update(upd["quality"])
        merged["time"] = max(merged["time"], upd["time"])
        if not upd["historical"]:
            self.last_seen[asset] = max(self.last_seen.get(asset, 0), upd["time"])
        m = self.machines.get(asset)
        if m is not None and not upd["historical"]:
            for s in record["samples"]:
                if s["quality"] != "GOOD":
                    continue
                if s["tag"] == m.state_tag and self.states.take(asset, s["source_time"], s["value"], m.codes):
                    self.broadcast("machine", self.machine_view(asset), asset=asset)
                elif s["tag"] in m.counters:
                    self.counters.take(asset, s["tag"], s["source_time"], s["value"])
        pend = self._pending_frames.get(asset)
        if pend is None:
            self._pending_frames[asset] = upd
        else:  # coalesce: newest value per tag since the last push
            pend["values"].update(upd["values"])
            pend["quality"].update(upd["quality"])
            pend["time"] = max(pend["time"], upd["time"])

    def broadcast(self, event: str, data: Any, asset: str | None = None) -> None:
        msg = f"event: {event}\ndata: {dumps(data)}\n\n"
        for sub in list(self.subscribers):
            if asset is not None and sub.asset != asset:
                continue
            try:
                sub.queue.put_nowait(msg)
            except asyncio.QueueFull:
                self.subscribers.discard(sub)
                with contextlib.suppress(asyncio.QueueFull):
                    sub.queue.put_nowait(None)  # end that stream; the browser's EventSource reconnects

    # --- periodic work ---

    async def flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            if self._pending_frames:
                for asset, upd in self._pending_frames.items():
                    m = self.machines.get(asset)
                    if m is not None and m.counters:
                        upd["rates"] = self.counters.rates(asset, m.counters)
                    self.broadcast("frames", [upd], asset=asset)
                self._pending_frames = {}
            if self._pending_anomaly:
                for asset, a in self._pending_anomaly.items():
                    self.broadcast("anomalies", [a], asset=asset)
                self._pending_anomaly = {}

    async def status_loop(self) -> None:
        """online/offline changes (every asset), and a tick so each page knows its stream is alive."""
        while True:
            status = self.status()
            changed = {a: s for a, s in status.items() if self._online.get(a) != s["online"]}
            self._online.update({a: s["online"] for a, s in status.items()})
            if changed:
                self.broadcast("status", changed)
            self.broadcast("tick", {"now": now_us(), "feed": self.feed_view()})
            await asyncio.sleep(TICK_S)

    async def health_loop(self) -> None:
        while True:
            if self.sampler is not None:
                try:
                    self.health = {**await asyncio.to_thread(self.sampler.status), "error": None}
                except Exception as e:  # Kafka away: say so, keep the last figures
                    err = e.args[0] if isinstance(e, KafkaException) and e.args else None
                    why = err.str() if isinstance(err, KafkaError) else str(e)
                    where = kafka_clients.bootstrap(self.settings)
                    self.health = {**self.health, "error": f"Kafka at {where} not answering: {why}"}
            self.broadcast("health", self.health_view())
            await asyncio.sleep(HEALTH_S)

    # --- views ---

    def status(self) -> dict[str, dict[str, Any]]:
        now = now_us()
        status = asset_status(self.cfg, self.intervals, self.last_seen, self.assets, now)
        if self.model is not None:
            # the worker's word (plant.state.v1) where it has one, unless it stopped saying anything
            for a, s in status.items():
                rec = self.model.asset(a)
                if rec is None:
                    continue
                fresh = now - rec["updated"] <= offline_after_s(self.cfg, self.intervals.get(a)) * US
                s["online"] = bool(rec["online"]) and fresh
                s["reason"] = rec["offline_reason"] if fresh else "no state from the worker"
                s["offline_since"] = rec["offline_since"]
        return status

    def acks(self) -> dict[str, dict[str, Any]]:
        return self.model.acks() if self.model is not None else {}

    def alert_rows(self) -> list[dict[str, Any]]:
        """Active alerts, and cleared ones whose alarm still waits for an acknowledgement (ISA-18.2: returned
        to normal unacknowledged, or latched)."""
        rows = [self.alert_row(a) for a in self.board.active(self.acks())]
        for a in self.board.cleared():
            row = self.alert_row(a)
            if row["alarm"] is not None and row["alarm"]["state"] in ("RTN_UNACK", "LATCHED"):
                rows.append(row)
        return rows

    def alert_row(self, shown: dict[str, Any]) -> dict[str, Any]:
        """An alert as the page lists it: with its acknowledgement and its alarm's lifecycle state."""
        alarm = self.model.alarm(shown["asset"], shown["rule"]) if self.model is not None else None
        current = alarm is not None and alarm["alert_id"] == shown["alert_id"]
        return {
            **shown,
            "ack": self.acks().get(shown["alert_id"]),
            "alarm": {k: alarm[k] for k in ("state", "shelved_until", "shelved_by", "suppressed_reason")}
            if current and alarm is not None
            else None,
        }

    def feed_view(self) -> dict[str, Any]:
        feed = self.feed
        if feed is None:
            return {"state": "off", "detail": "live feed off (--no-live): history only"}
        return feed.view()

    def health_view(self) -> dict[str, Any]:
        figures = self.model.figures(now_us()) if self.model is not None and self.model.alarms else None
        return {**self.health, "feed": self.feed_view(), "browsers": len(self.subscribers), "alarms": figures}

    def oee_window(self, rec: dict[str, Any]) -> dict[str, Any]:
        a = self.asset_cfg.get(rec["asset"])
        planned = self.planned_kind(int(rec["window_start"]), int(rec["window_end"]))
        return oee_view.window_view(rec, a.ideal_cycle_time_s if a else None, planned)

    def planned_kind(self, t0: int, t1: int) -> str:
        """What the shift calendar says of all of [t0, t1): SHIFT, BREAK or OFF ("" when mixed)."""
        kinds = {k for _a, _b, k, _o in ms.segments(self.calendar, t0, t1)}
        return kinds.pop() if len(kinds) == 1 else ""

    def machine_view(self, asset: str) -> dict[str, Any] | None:
        cur = self.states.current.get(asset)
        return None if cur is None else {"asset": asset, **cur}

    def asset_live(self, asset: str) -> dict[str, Any]:
        m = self.machines.get(asset)
        return {
            "values": self.values.get(asset, {"values": {}, "quality": {}, "time": 0}),
            "anomaly": self.anomaly.get(asset),
            "machine": self.machine_view(asset),
            "rates": self.counters.rates(asset, m.counters) if m is not None else {},
        }

    def state(self, asset: str | None = None) -> dict[str, Any]:
        status = self.status()
        return {
            "now": now_us(),
            "status": status,
            "tree_oee": {a: v["oee"] for a, v in self.oee.items()},
            "oee": self.oee.get(asset) if asset is not None else None,
            "alerts": self.alert_rows(),
            "health": self.health_view(),
            "asset": asset,
            "live": self.asset_live(asset) if asset in self.asset_cfg else None,
        }

    def asset_info(self, asset: str) -> dict[str, Any]:
        a = self.asset_cfg[asset]
        m = self.machines[asset]
        return {
            "path": asset,
            "kind": a.kind,
            "description": a.description,
            "scan_interval_s": self.intervals.get(asset),
            "tags": self.tags.get(asset, []),
            "trend_tags": trend_tags(self.settings, asset),
            "state_tag": m.state_tag,
            "counters": list(m.counters),
            "ideal_cycle_time_s": a.ideal_cycle_time_s,
        }

    def trend_range(self, asset: str, query: dict[str, str]) -> ranges.TrendRange:
        now = now_us()
        points = self.cfg.history_points
        name = query.get("range", "auto")
        if "hours" in query and "range" not in query:
            try:
                hours = float(query["hours"])
            except ValueError:
                raise ValueError("hours must be a number, e.g. hours=24") from None
            if not 0 < hours <= 24 * 31:
                raise ValueError("hours must be > 0 and <= 744 (31 days)")
            return ranges.make_range("hours", now - int(hours * 3600 * US), now, points)
        if name == "auto":
            start = self.history.data_start(asset, trend_tags(self.settings, asset), now - ranges.PRESETS["7d"])
            longest = int(self.cfg.history_hours * 3600 * US)
            return ranges.preset_range(ranges.fitted_preset(start, now, longest), now, points, fitted=True)
        if name in ranges.PRESETS:
            return ranges.preset_range(name, now, points)
        if name == "shift":
            shift = machine.current_shift(self.calendar, now)
            return ranges.make_range("shift", shift["start"], now, points)
        if name == "custom":
            lo, hi = ranges.parse_custom(query.get("start", ""), query.get("end", ""), now)
            return ranges.make_range("custom", lo, hi, points)
        raise ValueError(f"range must be auto, {', '.join(ranges.PRESETS)}, shift or custom (with start and end)")

    def history_view(self, asset: str, r: ranges.TrendRange) -> dict[str, Any]:
        start, end, width = r.start, r.end, r.bucket_us
        classes = {reason: state for state, reason in self.machines[asset].codes.values() if reason}
        downtime = self.history.downtime(asset, start)
        return {
            "asset": asset,
            "range": r.view(),
            "start": start,
            "end": end,
            "bucket_us": width,
            "trends": self.history.trends(
                asset, trend_tags(self.settings, asset), start, end + 1, width, self.kpi_window_us
            ),
            "anomaly": self.history.anomaly(asset, start, end + 1, width),
            "downtime": [{**d, "state": classes.get(d["reason"])} for d in downtime_by_reason(downtime)],
        }

    def shift_view(self, asset: str) -> dict[str, Any]:
        """The current shift of one asset: state timeline with breaks, OEE so far, the last shifts' OEE."""
        now = now_us()
        shift = machine.current_shift(self.calendar, now)
        m = self.machines[asset]
        a = self.asset_cfg[asset]
        out: dict[str, Any] = {"asset": asset, "now": now, "shift": shift, "timeline": [], "since": None}
        if m.state_tag is not None:
            gap = int(offline_after_s(self.cfg, self.intervals.get(asset)) * US)
            rows, before, last = self.history.state_changes(asset, m.state_tag, shift["start"], now + 1, gap)
            segs = machine.timeline(rows, before, shift["start"], now, gap, m.codes)
            machine.close_timeline(segs, last if last is not None else before[0] if before else None, now, gap)
            out["timeline"] = segs
            real = [s for s in segs if s["state"] != machine.NO_DATA]
            if real:
                held = real[-1]
                since = held["start"]
                value = rows[-1][1] if rows else before[1] if before else None
                if since <= shift["start"] and value is not None:  # it began before the shift: look further back
                    week = 7 * 86_400 * US
                    since = self.history.value_since(asset, m.state_tag, shift["start"], value, week) or since
                out["since"], out["since_state"] = since, held["state"]
                cur = self.states.current.get(asset)
                # the live state continues the stored one (no silence between): it began at the stored start
                if cur is not None and cur["state"] == held["state"] and cur["since"] <= held["end"] + gap:
                    self.states.seed(asset, since)
        out["marks"] = machine.calendar_marks(self.calendar, shift["start"], shift["end"])
        windows = self.history.oee_windows(asset, shift["start"], now + 1, shifts=False)
        so_far = oee_view.combine(windows, a.ideal_cycle_time_s)
        if so_far["windows"] and so_far["planned_busy_time_s"] <= 0:
            so_far["reasons"] = oee_view.undefined_reasons(
                so_far, a.ideal_cycle_time_s, self.planned_kind(shift["start"], now)
            )
        out["oee"] = so_far
        records = self.history.oee_windows(asset, now - 8 * 86_400 * US, now + 1, shifts=True)
        # a closed shift's factors from its record's times and counts, as the shift so far: a shift with planned
        # busy time in which the machine never ran reads OEE 0
        out["last_shifts"] = [
            {**oee_view.combine([r], a.ideal_cycle_time_s), "name": r.get("shift")}
            for r in sorted(records, key=lambda r: -int(r["window_start"]))[:LAST_SHIFTS]
        ]
        out["machine"] = self.machine_view(asset)
        return out


HUB: web.AppKey[Hub] = web.AppKey("hub", Hub)
AUTH: web.AppKey[Auth] = web.AppKey("auth", Auth)


def bad(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message}, status=status)


def asset_of(request: web.Request) -> str | web.Response:
    asset = request.query.get("asset", "")
    if asset not in request.app[HUB].asset_cfg:
        return bad(f"unknown asset {asset!r}; use one of /api/plant's assets", 404)
    return asset


async def index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


async def login_page(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "login.html", headers={"Cache-Control": "no-store"})


async def api_plant(request: web.Request) -> web.Response:
    return web.json_response(request.app[HUB].plant, dumps=dumps)


async def api_asset(request: web.Request) -> web.Response:
    asset = asset_of(request)
    if isinstance(asset, web.Response):
        return asset
    return web.json_response(request.app[HUB].asset_info(asset), dumps=dumps)


async def api_state(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    return web.json_response(hub.state(request.query.get("asset")), dumps=dumps)  # on the loop: no races


async def api_history(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    asset = asset_of(request)
    if isinstance(asset, web.Response):
        return asset
    try:
        r = await asyncio.to_thread(hub.trend_range, asset, dict(request.query))
    except ValueError as e:
        return bad(str(e))
    return web.json_response(await asyncio.to_thread(hub.history_view, asset, r), dumps=dumps)


async def api_shift(request: web.Request) -> web.Response:
    asset = asset_of(request)
    if isinstance(asset, web.Response):
        return asset
    return web.json_response(await asyncio.to_thread(request.app[HUB].shift_view, asset), dumps=dumps)


async def api_events(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    asset = request.query.get("asset")
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await resp.prepare(request)
    sub = Subscriber(asyncio.Queue(QUEUE_MAX), asset if asset in hub.asset_cfg else None)
    hub.subscribers.add(sub)  # before the snapshot, so nothing falls between the two
    try:
        snapshot = hub.state(sub.asset)
        await resp.write(f"retry: 2000\nevent: snapshot\ndata: {dumps(snapshot)}\n\n".encode())
        while True:
            msg = await sub.queue.get()
            if msg is None:
                break
            await resp.write(msg.encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        hub.subscribers.discard(sub)
    return resp


def build_app(settings: Settings, hub: Hub, auth: Auth, alarms: AlarmApi | None = None) -> web.Application:
    app = web.Application(middlewares=[auth.middleware()])
    if alarms is not None:
        alarms.routes(app)
    app[HUB] = hub
    app[AUTH] = auth
    app.router.add_get("/", index)
    app.router.add_get("/login", login_page)
    app.router.add_post("/api/login", auth.login)
    app.router.add_post("/api/logout", auth.logout)
    app.router.add_get("/api/me", auth.me)
    app.router.add_get("/api/plant", api_plant)
    app.router.add_get("/api/asset", api_asset)
    app.router.add_get("/api/state", api_state)
    app.router.add_get("/api/history", api_history)
    app.router.add_get("/api/shift", api_shift)
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
    check_exposure(cfg)
    auth = Auth(cfg, settings.pipeline.state_dir)
    history = open_history(settings)
    hub = Hub(settings, history)
    hub.loop = asyncio.get_running_loop()
    await asyncio.to_thread(hub.seed)
    alarms: AlarmApi | None = None
    sender: CommandSender | None = None
    if live:
        hub.model = PlantModel(settings, hub.deliver_threadsafe)
        hub.model.start()
        sender = CommandSender(settings, hub.model)
        alarms = AlarmApi(settings, hub.model, sender, hub.board.get)
        hub.feed = LiveFeed(settings, hub.deliver_threadsafe)
        hub.feed.start()
        hub.sampler = Sampler(settings)
    runner = web.AppRunner(
        build_app(settings, hub, auth, alarms),
        access_log_class=PathOnlyAccessLogger,
        handler_cancellation=True,
        shutdown_timeout=1.0,
    )
    await runner.setup()
    site = web.TCPSite(runner, cfg.host, cfg.port)
    loops = (hub.flush_loop(), hub.status_loop(), hub.health_loop())
    tasks = [asyncio.create_task(c) for c in loops]
    try:
        await site.start()
        how = "sign-in" if auth.users is not None else "token" if auth.token else "no sign-in: loopback only"
        log.info("dashboard on %s (%s)", url(settings), how)
        await stop.wait()
    finally:
        for t in tasks:
            t.cancel()
        for sub in list(hub.subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                sub.queue.put_nowait(None)
        await runner.cleanup()
        if hub.feed is not None:
            await asyncio.to_thread(hub.feed.close)
        if hub.sampler is not None:
            hub.sampler.close()
        if hub.model is not None:
            await asyncio.to_thread(hub.model.close)
        if sender is not None:
            sender.close()
        history.close()


def main(settings: Settings, host: str | None = None, port: int | None = None, live: bool = True) -> None:
    if host is not None or port is not None:
        cfg = settings.pipeline.dashboard.model_copy(
            update={k: v for k, v in (("host", host), ("port", port)) if v is not None}
        )
        settings = settings.model_copy(update={"pipeline": settings.pipeline.model_copy(update={"dashboard": cfg})})

    # a signal asks for an orderly stop, within a deadline: the live feed's consumer may wait for a broker
    # that is gone
    stopper = StopOnSignal("the dashboard", settings.pipeline.shutdown_timeout_s).install()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        stopper.on_stop(lambda: loop.call_soon_threadsafe(stop.set))
        await serve(settings, stop, live=live)

    asyncio.run(run())


__all__ = ["ExposureError", "main", "serve", "url"]
