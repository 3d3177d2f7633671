"""``/login`` and ``/logout``: a browser signs in once with the token and gets a session
cookie (see ``web.auth``); without ``web.token`` both just lead on."""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ivcontrast.web.auth import COOKIE, safe_next, session_value, token_matches
from ivcontrast.web.deps import Context
from ivcontrast.web.pages.render import Page

router = APIRouter(include_in_schema=False)
MAX_LOGIN_BODY = 4096  # a token and a local path; anything longer is not a sign-in


@router.get("/login", response_class=HTMLResponse)
def login_form(ctx: Context, page: Page, next: str | None = None) -> Response:
    if ctx.settings.web.token is None:
        return RedirectResponse(safe_next(next), status_code=303)
    return page("login.html", next=safe_next(next), error=None)


@router.post("/login", response_class=HTMLResponse)
async def login(ctx: Context, page: Page, request: Request) -> Response:
    token = ctx.settings.web.token
    if token is None:
        return RedirectResponse("/", status_code=303)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_LOGIN_BODY:
            return Response("sign-in form too large", status_code=413)
    form = parse_qs(body.decode("utf-8", "replace"))
    given = (form.get("token") or [""])[0]
    target = safe_next((form.get("next") or ["/"])[0])
    if not token_matches(given, token):
        return page("login.html", 401, next=target, error="That token is not valid.")
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        session_value(token),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.get("/logout")
def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response
