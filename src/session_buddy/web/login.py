"""Logging in to a secured dashboard: a token with `sessions:read`, pasted once, is
exchanged for a login cookie, so that every tab, bookmark and restarted browser opens
the pages until the token expires (or LONGEST_LOGIN passes); logging out ends it.

The cookie is HttpOnly (no script reads it), SameSite=Strict (no other site's page
sends it), Secure when the browser came over https, scoped to the dashboard's path, and
holds a login signed with the server's secret under an audience of its own: it opens
the pages, never the tools or /metrics. Logging in and out are POSTs refused from other
sites (the browser's Origin and Sec-Fetch-Site), and logging out carries the login's
own CSRF token. The token itself is never put in a URL, in storage a script can read,
or in a log.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from session_buddy.app.auth import READ_SCOPE, AuthError, Caller, MissingScope
from session_buddy.app.service import SessionService
from session_buddy.web.middleware import HTTPS_STATE_KEY, PREFIX_STATE_KEY, refusal

COOKIE = "session_buddy_login"
LONGEST_LOGIN = 30 * 24 * 3600
TOKEN_COMMAND = "session-buddy token create --scope sessions:read --ttl 2592000"
_SAID = {
    "missing": "Paste a token to open the dashboard.",
    "malformed": "That is not a session-buddy token: paste the whole last line that "
    "`session-buddy token create` printed.",
    "expired": "That token has expired: make a new one.",
    "signature": "That token was made with another secret than this server's.",
    "audience": "That token is not for session-buddy.",
    "algorithm": "That token is not signed as session-buddy signs its tokens (HS256).",
}


def friendly(exc: AuthError) -> str:
    """What a person is told of a token that cannot open the dashboard."""
    if isinstance(exc, MissingScope):
        has = ", ".join(exc.granted) or "no scope"
        return f"That token may not read sessions (it has {has}): make one with sessions:read."
    return _SAID.get(exc.reason, "That token cannot open the dashboard.")


def prefix(request: Request) -> str:
    """Where the dashboard's own addresses start (the proxy's sub-path, or "")."""
    return str(request.scope.get("state", {}).get(PREFIX_STATE_KEY, ""))


def logged_in(service: SessionService, request: Request) -> dict[str, Any] | None:
    """The login the request's cookie holds, if it holds a good one."""
    value = request.cookies.get(COOKIE)
    if service.authority is None or not value:
        return None
    try:
        return service.authority.verify_login(value)
    except AuthError:
        return None


def _cross_site(request: Request) -> bool:
    """Does a browser say this POST comes from another site? (A foreign Origin is
    refused before, by TrustedHostMiddleware, for every path.)"""
    return request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none")


def _back(request: Request) -> str:
    """Where to go after logging in: the page it was asked on, if it is one of ours."""
    wanted = request.query_params.get("next", "/")
    if not wanted.startswith("/") or wanted.startswith("//") or "\\" in wanted:
        wanted = "/"
    return prefix(request) + wanted


async def log_in(
    service: SessionService, request: Request, locked: Callable[[Request, str | None], Response]
) -> Response:
    """POST /login: the form's token for a login cookie, or the locked page saying why."""
    if _cross_site(request):
        return refusal(403, "cross_site", "a login from another site is refused")
    assert service.authority is not None
    form = await request.form()
    token = str(form.get("token") or "").strip()
    try:
        claims = service.authority.authorize(Caller(token or None), READ_SCOPE)
    except AuthError as exc:
        return locked(request, friendly(exc))
    value, seconds = service.authority.login(claims, LONGEST_LOGIN)
    answer = RedirectResponse(_back(request), status_code=303)
    answer.set_cookie(
        COOKIE,
        value,
        max_age=seconds,
        path=prefix(request) or "/",
        secure=bool(request.scope.get("state", {}).get(HTTPS_STATE_KEY)),
        httponly=True,
        samesite="strict",
    )
    return answer


async def log_out(service: SessionService, request: Request) -> Response:
    """POST /logout: the login ends (its cookie goes), if the form carries its CSRF
    token."""
    login = logged_in(service, request)
    form = await request.form()
    given = str(form.get("csrf") or "")
    if _cross_site(request) or login is None or not hmac.compare_digest(given, login["csrf"]):
        return refusal(403, "cross_site", "logging out needs the dashboard's own form")
    answer = RedirectResponse(prefix(request) + "/", status_code=303)
    answer.delete_cookie(COOKIE, path=prefix(request) or "/")
    return answer
