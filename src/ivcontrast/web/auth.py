"""The optional bearer token.

When ``web.token`` is set, every request needs ``Authorization: Bearer <token>``, except:
``/health`` while ``web.public_health`` is on (probes and load balancers carry no secret;
without the token it says only ok, warn or fail per check, see :func:`may_see_details`);
``/static/`` (the stylesheet and script, no data); and ``/login``. A browser cannot add the header to a page it navigates to, so ``/login`` takes
the token once and sets an HttpOnly, SameSite=Strict cookie holding an HMAC of the token
(never the token itself). Both comparisons are constant-time.

Unauthorised page loads in a browser are redirected to ``/login``; everything else gets
401 with ``WWW-Authenticate: Bearer``.

Guessing is limited: a client (by address) that failed ``web.login_failures_per_minute``
times in the last minute, with a wrong token at ``/login`` or a wrong bearer token anywhere,
gets 429 with ``Retry-After`` for any further try until the minute has passed. A missing
token or a stale cookie is not a guess and does not count.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, MutableMapping
from typing import Any
from urllib.parse import quote

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

COOKIE = "ivcontrast_session"
PUBLIC_PREFIXES = ("/static/",)
PUBLIC_PATHS = frozenset({"/login", "/logout", "/favicon.ico"})
STATE_KEY = "ivcontrast_authorised"  # in the request's scope state: did it carry the token?
FAILURE_WINDOW_SECONDS = 60.0
MAX_TRACKED_CLIENTS = 10_000  # the oldest client is forgotten beyond this (bounded memory)


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


def may_see_details(scope: MutableMapping[str, Any]) -> bool:
    """False for a request that :class:`TokenAuth` let through without the token (a public
    ``/health``); True where no token is configured."""
    return bool(scope.get("state", {}).get(STATE_KEY, True))


class FailureLimiter:
    """Failed sign-ins per client in a sliding window; at ``limit`` the client must wait."""

    def __init__(
        self,
        limit: int,
        window: float = FAILURE_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str) -> float:
        """Seconds the client must wait before its next try; 0 if it may try now."""
        times = self._failures.get(client)
        if times is None:
            return 0.0
        now = self.clock()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[client]
            return 0.0
        return times[0] + self.window - now if len(times) >= self.limit else 0.0

    def record(self, client: str) -> None:
        times = self._failures.setdefault(client, deque(maxlen=self.limit))
        times.append(self.clock())
        self._failures.move_to_end(client)
        while len(self._failures) > MAX_TRACKED_CLIENTS:
            self._failures.popitem(last=False)
        if len(times) >= self.limit:
            log.warning(
                "web: %d failed sign-ins from %s within %g s; it waits",
                self.limit,
                client,
                self.window,
            )


class TokenAuth:
    """ASGI middleware: checks the token before any route, static file or 404."""

    def __init__(
        self, app: ASGIApp, token: str, public_health: bool, failures_per_minute: int = 10
    ) -> None:
        self.app = app
        self.token = token
        self.cookie = session_value(token)
        self.public = PUBLIC_PATHS | ({"/health"} if public_health else set())
        self.limiter = FailureLimiter(failures_per_minute)

    def is_public(self, path: str) -> bool:
        return path in self.public or path.startswith(PUBLIC_PREFIXES)

    def authorised(self, headers: Headers, conn: HTTPConnection) -> bool:
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credentials:
            return token_matches(credentials.strip(), self.token)
        cookie = conn.cookies.get(COOKIE)
        return cookie is not None and hmac.compare_digest(cookie.encode(), self.cookie.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        client = scope["client"][0] if scope.get("client") else "unknown"
        signing_in = scope["path"] == "/login" and scope["method"] == "POST"
        guessing = signing_in or headers.get("authorization", "").lower().startswith("bearer ")
        if guessing:
            wait = self.limiter.retry_after(client)
            if wait > 0:
                await _too_many(wait)(scope, receive, send)
                return
        ok = self.authorised(headers, HTTPConnection(scope))
        if guessing and not ok and not signing_in:
            self.limiter.record(client)
        scope.setdefault("state", {})[STATE_KEY] = ok
        if signing_in:
            await self.app(scope, receive, self._count_refusals(client, send))
        elif ok or self.is_public(scope["path"]):
            await self.app(scope, receive, send)
        else:
            await self._refuse(scope, headers)(scope, receive, send)

    def _count_refusals(self, client: str, send: Send) -> Send:
        """``send`` that records a failure when the sign-in form answers 401."""

        async def counting(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                self.limiter.record(client)
            await send(message)

        return counting

    @staticmethod
    def _refuse(scope: Scope, headers: Headers) -> Response:
        wants_page = scope["method"] == "GET" and "text/html" in headers.get("accept", "")
        if wants_page and not scope["path"].startswith("/api/"):
            target = scope["path"] + (
                "?" + scope["query_string"].decode("latin-1") if scope["query_string"] else ""
            )
            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        return JSONResponse(
            {"detail": "a valid bearer token is required"},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="ivcontrast"'},
        )


def _too_many(wait: float) -> Response:
    return JSONResponse(
        {"detail": "too many failed sign-ins from this address; try again later"},
        status_code=429,
        headers={"Retry-After": str(max(1, int(wait + 0.999)))},
    )
