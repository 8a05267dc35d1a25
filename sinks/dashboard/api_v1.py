"""The read API (the plant's live model from Kafka) and the alarm actions, as aiohttp routes.

Routes (authentication and roles: auth.py; the document: openapi.py):
  GET  /api/v1/assets[?prefix=]      every asset's latest state from plant.state.v1
  GET  /api/v1/assets/{path}         one asset's state and its alarms (plant.alarm-state.v1)
  GET  /api/v1/alarms[?asset=]       every alarm's lifecycle state and the ISA-18.2 figures
  POST /api/v1/alarm-commands        an operator command on one alarm (JSON: asset, rule, action, ...)
  GET  /api/v1/openapi.json          the OpenAPI 3.1 document of these routes
  POST /api/alerts/{id}/ack|shelve|unshelve   the page's buttons: the same commands for the alert's alarm

Every action becomes an AlarmCommand for the caller as authenticated (alarm_commands.py), and its answer
is the worker's: the transition, or its reason for refusing (HTTP 409). What can be refused here already
is refused here: an unknown asset (404), a shelve without a valid duration (400), a role without the
right (403, by `requires`).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from plantstream.core import roles
from plantstream.core.config import Settings
from plantstream.core.records import AlarmAction
from sinks.dashboard import openapi
from sinks.dashboard.alarm_commands import Answer, CommandSender
from sinks.dashboard.auth import requires
from sinks.dashboard.plant_model import PlantModel
from sinks.dashboard.users import User

ACTIONS: tuple[AlarmAction, ...] = ("ACKNOWLEDGE", "SHELVE", "UNSHELVE", "REMOVE_FROM_SERVICE", "RETURN_TO_SERVICE")
PAGE_ACTIONS: dict[str, AlarmAction] = {"ack": "ACKNOWLEDGE", "shelve": "SHELVE", "unshelve": "UNSHELVE"}


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False, default=str)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=dumps)


class AlarmApi:
    def __init__(
        self,
        settings: Settings,
        model: PlantModel,
        sender: CommandSender,
        alert: Callable[[str], dict[str, Any] | None],
    ) -> None:
        self.settings = settings
        self.model = model
        self.sender = sender
        self.alert = alert  # alert_id -> the alert as the page shows it (asset, rule), or None
        self.assets = {a.path for a in settings.plant.assets}
        self._doc = dumps(openapi.document())

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v1/assets", self.list_assets)
        app.router.add_get("/api/v1/assets/{path}", self.one_asset)
        app.router.add_get("/api/v1/alarms", self.list_alarms)
        app.router.add_get("/api/v1/openapi.json", self.document)
        # the right each action needs is checked per request (the body names the action)
        app.router.add_post("/api/v1/alarm-commands", requires("view")(self.command))
        for path, action in PAGE_ACTIONS.items():
            app.router.add_post(
                f"/api/alerts/{{alert_id}}/{path}", requires(roles.ACTION_RIGHT[action])(self._page_action(action))
            )

    # --- reads ---

    async def list_assets(self, request: web.Request) -> web.Response:
        prefix = request.query.get("prefix", "")
        rows = [r for r in self.model.all_assets() if r["asset"].startswith(prefix)]
        return _json({"assets": rows})

    async def one_asset(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        if path not in self.assets:
            return _json({"error": f"unknown asset {path!r}; GET /api/v1/assets lists them"}, 404)
        rec = self.model.asset(path)
        if rec is None:
            return _json({"error": f"no state of {path} on plant.state.v1 yet: is `plantstream process` running?"}, 404)
        return _json({"asset": rec, "alarms": self.model.all_alarms(path)})

    async def list_alarms(self, request: web.Request) -> web.Response:
        asset = request.query.get("asset")
        return _json({"alarms": self.model.all_alarms(asset), "figures": self.model.figures(time.time_ns() // 1000)})

    async def document(self, request: web.Request) -> web.Response:
        return web.Response(text=self._doc, content_type="application/json")

    # --- actions ---

    async def command(self, request: web.Request, user: User) -> web.Response:
        body = await _body(request)
        if body is None:
            return _json({"error": "send the command as a JSON object: asset, rule, action (and comment, ...)"}, 400)
        action = body.get("action")
        if action not in ACTIONS:
            return _json({"error": f"action must be one of {', '.join(ACTIONS)}"}, 400)
        right = roles.ACTION_RIGHT[action]
        if not user.can(right):
            who = f"{user.name} ({user.role})"
            return _json({"error": f"{who} may not {action}: {' or '.join(roles.roles_with(right))} may"}, 403)
        return await self._send(user, str(body.get("asset", "")), str(body.get("rule", "")), action, body)

    def _page_action(self, action: AlarmAction) -> Callable[[web.Request, User], Any]:
        async def handler(request: web.Request, user: User) -> web.Response:
            alert_id = request.match_info["alert_id"]
            shown = self.alert(alert_id)
            if shown is None:
                return _json({"error": f"no alert {alert_id!r} is known to this dashboard"}, 404)
            body = await _body(request) or {}
            if action == "ACKNOWLEDGE":
                body["alert_id"] = alert_id  # refused by the worker when it is no longer the current incident
            if "note" in body and "comment" not in body:
                body["comment"] = body["note"]
            response = await self._send(user, shown["asset"], shown["rule"], action, body)
            return response

        return handler

    async def _send(self, user: User, asset: str, rule: str, action: AlarmAction, body: dict[str, Any]) -> web.Response:
        if asset not in self.assets:
            return _json({"error": f"unknown asset {asset!r}; GET /api/v1/assets lists them"}, 404)
        if not rule:
            return _json({"error": "rule is required: the alarm's alert rule name"}, 400)
        duration: float | None = None
        if action == "SHELVE":
            duration = _number(body.get("duration_s"))
            top = self.sender.max_shelve_s
            if duration is None or duration <= 0 or duration > top:
                return _json({"error": f"duration_s is required: how long to shelve, seconds (0 < d <= {top:g})"}, 400)
        # who acts is the caller as authenticated, never a name the request brings
        answer: Answer = await self.sender.send(
            asset=asset,
            rule=rule,
            action=action,
            user=user.name,
            role=user.role,
            comment=str(body.get("comment", "")),
            shelve_duration_s=duration,
            alert_id=str(body["alert_id"]) if body.get("alert_id") else None,
        )
        body_out = answer.body
        if answer.status == 200 and action == "ACKNOWLEDGE":
            ev = answer.body["event"]
            body_out = {**body_out, "ack": {"acked_at": ev["time"], "acked_by": ev["user"], "note": ev["comment"]}}
        return _json(body_out, answer.status)


async def _body(request: web.Request) -> dict[str, Any] | None:
    if not request.can_read_body:
        return {}
    with contextlib.suppress(ValueError):
        body = await request.json()
        if isinstance(body, dict):
            return body
    return None


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float | str):
        return None
    try:
        f = float(v)
    except ValueError:
        return None
    return f if math.isfinite(f) else None
