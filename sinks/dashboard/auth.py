"""Who is at the page: signed-in users (sessions), the shared token for machine clients, or `local`.

- Users sign in on /login with a name and password from the users file (`users.py`); the session lives in
  an HttpOnly, SameSite=Strict cookie and ends after idle time or a maximum age (`sessions.py`).
- The shared token (`pipeline.dashboard.token`) is for machine clients: `Authorization: Bearer`, or
  `?token=` once (redirected to the same URL without it, the token then in an HttpOnly cookie). It acts
  with `token_role`, viewer (read-only) unless configured otherwise. Compared in constant time, never logged.
- With neither configured, requests act as `local` with `local_role`; that is allowed on a loopback
  address only: `check_exposure` refuses to start on any other address without authentication.

Every handler finds the caller in `request["user"]` (a `users.User`); an alarm action is wrapped in
`requires(action)`, which answers 403 to a role without that right and hands the user to the handler, so
the audit trail records who acted.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from plantstream.core.config import DashboardSettings
from plantstream.core.errors import SinkError
from sinks.dashboard.sessions import LoginLimiter, SessionStore
from sinks.dashboard.users import User, UsersFile

COOKIE = "plantstream_dashboard"  # the shared token, after ?token=
SESSION_COOKIE = "plantstream_session"
# reachable before signing in: the sign-in page and what it needs
PUBLIC = frozenset({"/login", "/api/login", "/static/login.js", "/static/app.css"})

ActionHandler = Callable[[web.Request, User], Awaitable[web.StreamResponse]]


class ExposureError(SinkError, ValueError):
    """The dashboard would serve other machines without authentication."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_exposure(cfg: DashboardSettings) -> None:
    # an empty token (an unset variable in a compose file) would otherwise count as authentication and then
    # as none at all: the page open to everyone as `local_role`
    if cfg.token is not None and not cfg.token.get_secret_value().strip():
        raise ExposureError(
            "pipeline.dashboard.token is set but empty. Fix: set a long random token "
            "(e.g. PLANTSTREAM_PIPELINE__DASHBOARD__TOKEN=$(openssl rand -hex 24)) or leave it unset"
        )
    if is_loopback(cfg.host) or cfg.token is not None or cfg.users_file:
        return
    raise ExposureError(
        f"pipeline.dashboard.host is {cfg.host}, which serves other machines, but no authentication is configured. "
        "Fix: add users (`plantstream users add NAME --role operator`, then set pipeline.dashboard.users_file), or "
        "set a token (PLANTSTREAM_PIPELINE__DASHBOARD__TOKEN), or listen on 127.0.0.1"
    )


def presented_token(headers: Mapping[str, str], cookies: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The token a request carries, in order of precedence: Bearer header, query, cookie."""
    auth = headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    if "token" in query:
        return query["token"]
    return cookies.get(COOKIE)


def token_ok(expected: str | None, presented: str | None) -> bool:
    if expected is None or presented is None:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())


def url_without_token(path: str, query: Mapping[str, str]) -> str:
    rest = {k: v for k, v in query.items() if k != "token"}
    return path + ("?" + urlencode(rest) if rest else "")


def users_path(cfg: DashboardSettings, state_dir: str) -> Path | None:
    if not cfg.users_file:
        return None
    p = Path(cfg.users_file).expanduser()
    return p if p.is_absolute() else Path(state_dir).expanduser() / p


class Auth:
    def __init__(self, cfg: DashboardSettings, state_dir: str) -> None:
        self.cfg = cfg
        self.token = cfg.token.get_secret_value() if cfg.token else None
        path = users_path(cfg, state_dir)
        self.users = UsersFile(path) if path is not None else None
        self.sessions = SessionStore(cfg.session_idle_min * 60, cfg.session_max_h * 3600)
        self.limiter = LoginLimiter(cfg.login_max_failures, cfg.login_window_s)

    @property
    def open(self) -> bool:
        """No authentication configured: everyone is `local` (loopback only, see check_exposure)."""
        return self.token is None and self.users is None

    def identify(self, request: web.Request) -> User | None:
        if self.open:
            return User("local", self.cfg.local_role, "local")
        presented = presented_token(request.headers, request.cookies, request.query)
        if presented is not None and token_ok(self.token, presented):
            return User("token", self.cfg.token_role, "token")
        if self.users is not None:
            s = self.sessions.get(request.cookies.get(SESSION_COOKIE))
            if s is not None:
                role = self.users.role_of(s.name)
                if role is None:  # removed from the file: signed out
                    self.sessions.end_user(s.name)
                    return None
                return User(s.name, role, "session")
        return None

    def middleware(self) -> Middleware:
        @web.middleware
        async def who(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.path in PUBLIC:
                request["user"] = None
                return await handler(request)
            user = self.identify(request)
            if user is None:
                return self.unauthorized(request)
            request["user"] = user
            if user.via == "token" and "token" in request.query and request.method == "GET":
                resp = web.HTTPFound(url_without_token(request.path, request.query))
                resp.set_cookie(COOKIE, self.token or "", httponly=True, samesite="Strict", path="/")
                raise resp
            return await handler(request)

        return who

    def unauthorized(self, request: web.Request) -> web.StreamResponse:
        if self.users is not None and request.method == "GET" and not request.path.startswith("/api/"):
            raise web.HTTPFound("/login")
        how = "sign in on /login" if self.users is not None else "open it once with ?token=<token>"
        return web.json_response(
            {"error": f"this dashboard needs authentication: {how}, or send 'Authorization: Bearer <token>'"},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="plantstream"'},
        )

    # --- sign-in -------------------------------------------------------------------------------

    async def login(self, request: web.Request) -> web.Response:
        if self.users is None:
            return web.json_response({"error": "no users are configured (pipeline.dashboard.users_file)"}, status=404)
        if request.content_type != "application/json":
            return web.json_response({"error": "send the sign-in as JSON {name, password}"}, status=415)
        try:
            body = await request.json()
            name, password = str(body["name"]), str(body["password"])
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": "send the sign-in as JSON {name, password}"}, status=400)
        keys = (f"addr:{request.remote}", f"user:{name}")
        wait = self.limiter.retry_after(*keys)
        if wait > 0:
            return web.json_response(
                {"error": f"too many failed sign-ins; try again in {int(wait) + 1} s"},
                status=429,
                headers={"Retry-After": str(int(wait) + 1)},
            )
        user = await asyncio.to_thread(self.users.verify, name, password)  # argon2: ~50 ms of CPU
        if user is None:
            self.limiter.failed(*keys)
            return web.json_response({"error": "wrong name or password"}, status=401)
        self.limiter.succeeded(keys[1])
        resp = web.json_response({"user": user.view()})
        resp.set_cookie(
            SESSION_COOKIE,
            self.sessions.create(user.name),
            httponly=True,
            samesite="Strict",
            secure=request.secure,
            path="/",
        )
        return resp

    async def logout(self, request: web.Request) -> web.Response:
        self.sessions.end(request.cookies.get(SESSION_COOKIE))
        resp = web.json_response({"signed_out": True})
        resp.del_cookie(SESSION_COOKIE, path="/")
        return resp

    async def me(self, request: web.Request) -> web.Response:
        user: User = request["user"]
        return web.json_response({"user": user.view(), "sign_in": self.users is not None})


def requires(action: str) -> Callable[[ActionHandler], Handler]:
    """Wrap an action handler: the caller needs `action`, and the handler receives the caller."""

    def wrap(handler: ActionHandler) -> Handler:
        async def checked(request: web.Request) -> web.StreamResponse:
            user: User | None = request.get("user")
            if user is None:
                return web.json_response({"error": "sign in first"}, status=401)
            if not user.can(action):
                return web.json_response(
                    {"error": f"{user.name} ({user.role}) may not {action}; an operator or admin may"}, status=403
                )
            if request.can_read_body and request.content_type != "application/json":
                return web.json_response({"error": "send actions as JSON"}, status=415)
            return await handler(request, user)

        return checked

    return wrap


def identity(request: web.Request) -> Any:
    return request.get("user")
