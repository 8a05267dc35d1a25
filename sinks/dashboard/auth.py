"""The dashboard's optional access token: ?token= once (then a cookie), or `Authorization: Bearer`.

The token is compared in constant time and never logged: the access log omits query strings, and a
request that brings it in the URL is redirected to the same URL without it (so it leaves the address
bar and the browser history) with an HttpOnly cookie set instead.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from urllib.parse import urlencode

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

COOKIE = "plantstream_dashboard"


def presented_token(headers: Mapping[str, str], cookies: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The token a request carries, in order of precedence: Bearer header, query, cookie."""
    auth = headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    if "token" in query:
        return query["token"]
    return cookies.get(COOKIE)


def token_ok(expected: str | None, presented: str | None) -> bool:
    if expected is None:
        return True
    if presented is None:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())


def url_without_token(path: str, query: Mapping[str, str]) -> str:
    rest = {k: v for k, v in query.items() if k != "token"}
    return path + ("?" + urlencode(rest) if rest else "")


def middleware(expected: str | None) -> Middleware:
    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if expected is None:
            return await handler(request)
        presented = presented_token(request.headers, request.cookies, request.query)
        if not token_ok(expected, presented):
            return web.json_response(
                {
                    "error": "this dashboard needs its access token: open it once with ?token=<token>, "
                    "or send 'Authorization: Bearer <token>'"
                },
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="plantstream"'},
            )
        if "token" in request.query and request.method == "GET":
            resp = web.HTTPFound(url_without_token(request.path, request.query))
            resp.set_cookie(COOKIE, expected, httponly=True, samesite="Strict", path="/")
            raise resp
        return await handler(request)

    return check_token
