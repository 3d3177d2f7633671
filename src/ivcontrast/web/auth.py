"""The optional bearer token.

When ``web.token`` is set, every request needs ``Authorization: Bearer <token>``, except:
``/health`` while ``web.public_health`` is on (probes and load balancers carry no secret,
and it returns no patient data); ``/static/`` (the stylesheet and script, no data); and
``/login``. A browser cannot add the header to a page it navigates to, so ``/login`` takes
the token once and sets an HttpOnly, SameSite=Strict cookie holding an HMAC of the token
(never the token itself). Both comparisons are constant-time.

Unauthorised page loads in a browser are redirected to ``/login``; everything else gets
401 with ``WWW-Authenticate: Bearer``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from urllib.parse import quote

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

COOKIE = "ivcontrast_session"
PUBLIC_PREFIXES = ("/static/",)
PUBLIC_PATHS = frozenset({"/login", "/logout", "/favicon.ico"})


def session_value(token: str) -> str:
    """The cookie value for ``token``: proves the browser signed in, without revealing it."""
    return hmac.new(token.encode(), b"ivcontrast web session v1", hashlib.sha256).hexdigest()


def token_matches(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode(), token.encode())


def safe_next(target: str | None) -> str:
    """Only a local path may follow a sign-in (no open redirect to another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


class TokenAuth:
    """ASGI middleware: checks the token before any route, static file or 404."""

    def __init__(self, app: ASGIApp, token: str, public_health: bool) -> None:
        self.app = app
        self.token = token
        self.cookie = session_value(token)
        self.public = PUBLIC_PATHS | ({"/health"} if public_health else set())

    def is_public(self, path: str) -> bool:
        return path in self.public or path.startswith(PUBLIC_PREFIXES)

    def authorised(self, headers: Headers, conn: HTTPConnection) -> bool:
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credentials:
            return token_matches(credentials.strip(), self.token)
        cookie = conn.cookies.get(COOKIE)
        return cookie is not None and hmac.compare_digest(cookie.encode(), self.cookie.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        headers = Headers(scope=scope)
        if self.authorised(headers, conn):
            await self.app(scope, receive, send)
            return
        response: Response
        wants_page = scope["method"] == "GET" and "text/html" in headers.get("accept", "")
        if wants_page and not scope["path"].startswith("/api/"):
            target = scope["path"] + (
                "?" + scope["query_string"].decode("latin-1") if scope["query_string"] else ""
            )
            response = RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        else:
            response = JSONResponse(
                {"detail": "a valid bearer token is required"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="ivcontrast"'},
            )
        await response(scope, receive, send)
