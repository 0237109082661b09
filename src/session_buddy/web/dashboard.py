"""The dashboard: `/` (what runs, what waits, what failed, per component), `/sessions`
(a filtered page, the list_sessions filter names as query parameters) and
`/sessions/{id}` (every field, the event log, linked sessions).

Pages are rendered on the server (Jinja2, autoescaped; charts as SVG), work without
JavaScript, and read at most one page of sessions plus indexed aggregates. With a secret
set, a request without a `sessions:read` bearer token gets a page that asks for one;
dashboard.js keeps the token in session storage and sends it as a header, never in a URL.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from session_buddy import __version__
from session_buddy.amounts import count, money, usage_lines
from session_buddy.app.auth import READ_SCOPE, AuthError, Caller, bearer_token
from session_buddy.app.service import INTERNAL_ERROR, STORE_UNAVAILABLE, SessionService
from session_buddy.core.errors import InvalidArgument, StoreUnavailable
from session_buddy.core.records import BUCKETS, FILTER_COLUMNS, GROUP_KEYS
from session_buddy.core.states import ACTIVITIES
from session_buddy.timestamps import (
    format_micros,
    from_micros,
    human_age,
    human_duration,
    parse_timestamp,
    session_duration,
    to_micros,
)
from session_buddy.web import charts
from session_buddy.web.login import (
    COOKIE,
    TOKEN_COMMAND,
    friendly,
    log_in,
    log_out,
    logged_in,
    prefix,
)
from session_buddy.web.middleware import refusal

if TYPE_CHECKING:
    from jinja2 import Environment

WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
LONGEST_CUSTOM_WINDOW = timedelta(days=31)  # a page reads a bounded window
PAGE = 50
EVENTS_PAGE = 50
PAYLOAD_SHOWN = 4000  # characters of one event's payload on the page (the CLI has all)
STATIC = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}
# Waiting for a person first, then failing, then the rest.
ACTIVITY_ORDER = {"waiting_for_input": 0, "failing": 1, "working": 2, "idle": 3}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make Chromium send Origin: null
    "Cache-Control": "no-store",
}


def age(iso: str | None) -> str:
    """`3 min ago` for a stored time; `-` for none."""
    if not iso:
        return "-"
    return human_age(parse_timestamp(iso), datetime.now(UTC))


def took(record: dict[str, Any]) -> str:
    """A finished session's duration; an abandoned one's as far as it is known."""
    return session_duration(record["status"], record.get("duration_seconds"))


def elapsed(iso: str) -> str:
    """How long since a stored time: an active session's running time."""
    return human_duration((datetime.now(UTC) - parse_timestamp(iso)).total_seconds())


@functools.cache
def templates() -> Environment:
    """The page templates, made on the first page: a server that only speaks MCP never
    loads Jinja2 (about 2 MB of its memory)."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    environment = Environment(
        loader=PackageLoader("session_buddy.web", "templates"),
        autoescape=select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(
        duration=human_duration, age=age, elapsed=elapsed, took=took, money=money, count=count
    )
    return environment


def register_dashboard(server: Any, service: SessionService) -> None:
    """Add the dashboard's routes to the MCP server's HTTP app."""

    async def guarded(request: Request, page: Any) -> Response:
        header = request.headers.get("authorization")
        login = logged_in(service, request) if header is None else None
        request.state.login = login
        if login is None:
            try:
                service.authorize(Caller(bearer_token(header)), READ_SCOPE)
            except AuthError as exc:
                if header is not None:
                    return locked(request, friendly(exc))
                ended = LOGIN_ENDED if request.cookies.get(COOKIE) else None
                return locked(request, ended)
        began = time.perf_counter()
        try:
            html = await page(request, await service.manager.needing_someone())
        except InvalidArgument as exc:
            return _problem(request, 400, str(exc))
        except StoreUnavailable as exc:
            service.logger.error("dashboard: store failure: %s", exc)
            return _problem(request, 503, STORE_UNAVAILABLE)
        except Exception as exc:
            service.logger.error("dashboard: internal error: %r", exc, exc_info=exc)
            return _problem(request, 500, INTERNAL_ERROR)
        spent = f"app;dur={(time.perf_counter() - began) * 1000:.2f}"  # server time, for people
        return HTMLResponse(html, headers=SECURITY_HEADERS | {"Server-Timing": spent})

    async def overview(request: Request, needs_you: list[str]) -> str:
        return await _overview(service, request, needs_you)

    async def sessions(request: Request, needs_you: list[str]) -> str:
        return await _sessions(service, request, needs_you)

    async def detail(request: Request, needs_you: list[str]) -> str:
        return await _detail(service, request, needs_you)

    for path, page in (
        ("/", overview),
        ("/sessions", sessions),
        ("/sessions/{session_id}", detail),
    ):

        async def route(request: Request, page: Any = page) -> Response:
            return await guarded(request, page)

        server.custom_route(path, methods=["GET"])(route)

    @server.custom_route("/login", methods=["POST"])  # type: ignore[untyped-decorator]
    async def login(request: Request) -> Response:
        if service.authority is None:
            return refusal(404, "not_found", "this server has no secret: nothing to log in to")
        return await log_in(service, request, locked)

    @server.custom_route("/logout", methods=["POST"])  # type: ignore[untyped-decorator]
    async def logout(request: Request) -> Response:
        return await log_out(service, request)

    @server.custom_route("/static/{name}", methods=["GET"])  # type: ignore[untyped-decorator]
    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return refusal(404, "not_found", f"no static file {name!r}")
        body = resources.files("session_buddy.web").joinpath("static", name).read_bytes()
        headers = {"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"}
        return Response(body, media_type=STATIC[name], headers=headers)


LOGIN_ENDED = "Your login has ended (it expired, or the server's secret changed): paste a token."


def locked(request: Request, reason: str | None) -> HTMLResponse:
    """The page that asks for a token (401), saying why the last one would not do."""
    wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.url.path == "/login":  # a login that failed: still the page first asked
        wanted = request.query_params.get("next", "/")
    html = render(
        request,
        "locked.html",
        page="",
        reason=reason,
        command=TOKEN_COMMAND,
        next=urlencode({"next": wanted}),
    )
    return HTMLResponse(html, status_code=401, headers=SECURITY_HEADERS)


def render(request: Request, name: str, **values: Any) -> str:
    """A page, with what every page needs: the sub-path it is served under, the version,
    and the login's CSRF token for the logout form."""
    login = getattr(request.state, "login", None)
    return (
        templates()
        .get_template(name)
        .render(
            root=prefix(request),
            version=__version__,
            csrf=login["csrf"] if login else None,
            **values,
        )
    )


def _problem(request: Request, status: int, message: str) -> HTMLResponse:
    html = render(request, "error.html", message=message)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def _filters(request: Request) -> dict[str, str]:
    """The list_sessions filters in the query string (empty ones dropped)."""
    names = (*FILTER_COLUMNS, "started_after", "started_before")
    return {name: value for name in names if (value := request.query_params.get(name, ""))}


def _window(request: Request) -> tuple[str, str, str | None]:
    """(window name, since, until) from `window` (24h, 7d, 30d) or a custom range."""
    custom = request.query_params.get("started_after")
    if custom:
        until = request.query_params.get("started_before") or None
        _check_window(custom, until)
        return "custom", custom, until
    name = request.query_params.get("window", "24h")
    if name not in WINDOWS:
        raise InvalidArgument("window", f"Invalid window {name!r}: use one of {', '.join(WINDOWS)}")
    since = datetime.now(UTC) - WINDOWS[name]
    return name, str(format_micros(to_micros(since))), None


def _check_window(since: str, until: str | None) -> None:
    """A custom window is at most LONGEST_CUSTOM_WINDOW long (`stats` reads any)."""
    try:
        start = parse_timestamp(since)
        end = parse_timestamp(until) if until else datetime.now(UTC)
    except ValueError as exc:
        raise InvalidArgument("started_after", f"Invalid window: {exc}") from exc
    if end - start > LONGEST_CUSTOM_WINDOW:
        raise InvalidArgument(
            "started_after",
            f"a window of at most {LONGEST_CUSTOM_WINDOW.days} days, please "
            "(`session-buddy stats --since ... --until ...` reads any)",
        )


def _bucket_label(bucket: str) -> Any:
    """A bucket's start as an axis names it, in UTC as buckets are cut."""

    def label(group: dict[str, Any]) -> str:
        start = from_micros(group["bucket_us"]) if "bucket_us" in group else None
        start = start or parse_timestamp(group["bucket"])
        return start.strftime("%H:00" if bucket == "hour" else "%m-%d")

    return label


SMALL_CHARTS = 8  # components with a chart of their own, the busiest first


def _charts(summary: dict[str, Any], bucket: str, since: str, until: str | None) -> Any:
    """The window's chart and one per component, every bucket of the window in place."""
    size = BUCKETS[bucket]
    since_us = to_micros(parse_timestamp(since))
    until_us = to_micros(parse_timestamp(until)) if until else to_micros(datetime.now(UTC))
    label = _bucket_label(bucket)

    def start(group: dict[str, Any]) -> int:
        return int(to_micros(parse_timestamp(group["bucket"])))

    def chart(groups: list[dict[str, Any]], title: str) -> str:
        whole = charts.whole_window(groups, since_us, until_us, size, start)
        return charts.stacked_bars(whole, label, title)

    busiest = sorted(summary["series"].items(), key=lambda item: -sum(g["total"] for g in item[1]))
    return chart(summary["buckets"], f"sessions per {bucket} by final state"), [
        {"key": key, "chart": chart(groups, f"{key}: sessions per {bucket}")}
        for key, groups in busiest[:SMALL_CHARTS]
    ]


async def _overview(service: SessionService, request: Request, needs_you: list[str]) -> str:
    filters = {k: v for k, v in _filters(request).items() if k in GROUP_KEYS}
    window, since, until = _window(request)
    bucket = "hour" if window == "24h" else "day"
    # Two independent reads, each on a reader connection of its own: side by side.
    active, summary = await asyncio.gather(
        service.list_sessions(status="active", limit=PAGE, **filters),
        service.manager.overview(since, until, bucket=bucket, **filters),
    )
    waiting = sorted(
        active["sessions"], key=lambda s: (ACTIVITY_ORDER.get(s["activity"] or "", 4),)
    )
    total = summary["total"]
    bars, small_charts = _charts(summary, bucket, since, until)
    return render(
        request,
        "overview.html",
        page="overview",
        needs_you=needs_you,
        filters=filters,
        query=urlencode(filters),
        window=window,
        windows=list(WINDOWS),
        custom_from=since if window == "custom" else "",
        custom_to=until or "",
        since=since,
        active=waiting,
        more_active=active["next_cursor"] is not None,
        finished=summary["finished"],
        bucket=bucket,
        costliest=summary["costliest"],
        spend_per_bucket=[
            group | {"label": _bucket_label(bucket)(group)} for group in summary["spend"]
        ],
        components=[_crash_free(group) for group in summary["groups"]],
        bars=bars,
        small_charts=small_charts,
        legend=charts.legend(),
        histogram=charts.histogram(
            summary["histogram"],
            total["duration_p50"] if total else None,
            total["duration_p95"] if total else None,
        ),
        total=_crash_free(total) if total else None,
    )


def _crash_free(group: dict[str, Any]) -> dict[str, Any]:
    """Sentry's crash-free rates: share of sessions not crashed, and not crashed or
    abandoned (of every session counted)."""
    total = int(group["total"]) or 1
    return group | {
        "crash_free": 1 - int(group["crashed"]) / total,
        "crash_and_abandon_free": 1 - (int(group["crashed"]) + int(group["abandoned"])) / total,
    }


async def _sessions(service: SessionService, request: Request, needs_you: list[str]) -> str:
    filters = _filters(request)
    cursor = request.query_params.get("cursor") or None
    page = await service.list_sessions(**filters, limit=PAGE, cursor=cursor)
    next_query = (
        urlencode(filters | {"cursor": page["next_cursor"]}) if page["next_cursor"] else None
    )
    return render(
        request,
        "sessions.html",
        page="sessions",
        needs_you=needs_you,
        filters=filters,
        statuses=("active", "ended", "crashed", "abandoned"),
        activities=ACTIVITIES,
        sessions=page["sessions"],
        next_query=next_query,
        first_query=urlencode(filters) if cursor else None,
    )


async def _detail(service: SessionService, request: Request, needs_you: list[str]) -> str:
    session_id = request.path_params["session_id"]
    record = await service.get_session(session_id)
    after = request.query_params.get("events_after", "0")
    if not (after.isascii() and after.isdigit() and len(after) < 19):
        raise InvalidArgument("events_after", "events_after: must be an event id")
    events = (
        await service.manager.session_events(session_id, after=int(after), limit=EVENTS_PAGE + 1)
        if record.get("status") != "not_found"
        else []
    )
    more = len(events) > EVENTS_PAGE
    events = events[:EVENTS_PAGE]
    children = []
    links: dict[str, Any] = {}
    if record.get("status") != "not_found":
        links = await service.manager.linked_to(session_id, PAGE)
    if record.get("external_id") and record.get("status") != "not_found":
        linked = await service.list_sessions(external_id=record["external_id"], limit=PAGE)
        children = [s for s in linked["sessions"] if s["session_id"] != session_id]
    return render(
        request,
        "detail.html",
        page="detail",
        needs_you=needs_you,
        record=record,
        found=record.get("status") != "not_found",
        events=events,
        earlier=int(after) > 0,
        next_events=events[-1]["id"] if more else None,
        same_external=children,
        continued_by=links.get("continued_by", []),
        subagents=links.get("subagents", []),
        pretty=_pretty,
        usage_lines=usage_lines,
    )


def _pretty(value: Any) -> str:
    """JSON for people, cut at PAYLOAD_SHOWN characters."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    if len(text) <= PAYLOAD_SHOWN:
        return text
    whole = f"{len(text):,} characters; `session-buddy sessions events` shows all"
    return f"{text[:PAYLOAD_SHOWN]}\n… ({whole})"
