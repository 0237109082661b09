"""The tool table: each tool's arguments, scope, output schema and what it runs.

The MCP server publishes these tools; the local transport and the CLI call them through
`call_tool` too, so dispatch, credentials and error results are the same everywhere.
Arguments are loosely typed on purpose: bad input must come back as a normal result with
status="error" naming the field, never as a protocol error.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, get_type_hints

from pydantic import BaseModel, Field, create_model

from session_buddy.app import alert_rules
from session_buddy.app.arguments import Failure, text_argument
from session_buddy.app.auth import ADMIN_SCOPE, READ_SCOPE, WRITE_SCOPE, Caller, actor_of
from session_buddy.app.service import EXTERNAL_ID_MAX, SessionService
from session_buddy.core import Actor
from session_buddy.core.alerts import CONDITIONS
from session_buddy.core.errors import InvalidArgument
from session_buddy.core.queries import DEFAULT_PAGE
from session_buddy.core.records import FILTER_COLUMNS, StatsGroup, record_types
from session_buddy.mcp.event_models import (
    SessionEndEvent,
    SessionEndResult,
    SessionStartEvent,
    SessionStartResult,
)

SESSION_ID_MAX = 200


def _required_but_defaults(named: Any) -> dict[str, Any]:
    """A NamedTuple's fields as pydantic fields, required unless it has a default."""
    defaults = named._field_defaults
    return {name: (hint, defaults.get(name, ...)) for name, hint in get_type_hints(named).items()}


def _optional(hints: dict[str, Any], *required: str) -> dict[str, Any]:
    """Typed fields as pydantic fields, all optional but `required`."""
    return {
        name: (hint, ...) if name in required else (hint | None, None)
        for name, hint in hints.items()
    }


RecordResult: type[BaseModel] = create_model(
    "SessionRecord",
    __base__=Failure,
    __doc__="A stored session (DESIGN §3); on a miss only session_id and status='not_found'.",
    **(
        _optional(record_types(), "session_id")
        | {"status": (str, Field(description="active, ended, crashed, abandoned, not_found"))}
    ),
)


class HeartbeatResult(Failure):
    session_id: str
    status: str = Field(
        description="recorded, ignored (session already ended), not_found or error",
        json_schema_extra={"enum": ["recorded", "ignored", "not_found", "error"]},
    )
    session_status: str | None = None


class SessionPage(Failure):
    sessions: list[RecordResult]  # type: ignore[valid-type]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null at the end")
    status: str = Field(default="ok", json_schema_extra={"enum": ["ok", "error"]})


StatsGroupResult: type[BaseModel] = create_model(
    "StatsGroup",
    __doc__=StatsGroup.__doc__ or "",
    **_required_but_defaults(StatsGroup),
)


class SessionStats(Failure):
    group_by: str | None
    bucket: str | None = None
    since: str | None
    until: str | None
    groups: list[StatsGroupResult]  # type: ignore[valid-type]
    status: str = Field(default="ok", json_schema_extra={"enum": ["ok", "error"]})


class LoggedEvent(BaseModel):
    id: int
    received_at: str
    event_type: str
    event_id: str | None
    outcome: str
    payload: Any = Field(description="The event as it was received")


class SessionEvents(Failure):
    session_id: str
    events: list[LoggedEvent]
    status: str = Field(default="ok", json_schema_extra={"enum": ["ok", "error"]})


class HealthResult(BaseModel):
    status: str = Field(json_schema_extra={"enum": ["ok", "degraded"]})
    version: str
    database_reachable: bool
    active_sessions: int | None
    reason: str | None = Field(default=None, description="Why the status is degraded")


def _session_id(arguments: dict[str, Any]) -> str:
    return str(
        text_argument(
            "session_id", arguments.get("session_id"), required=True, max_length=SESSION_ID_MAX
        )
    )


def _external_id(arguments: dict[str, Any]) -> str | None:
    """The client's own session id, which may name a session instead of session_id."""
    return text_argument("external_id", arguments.get("external_id"), max_length=EXTERNAL_ID_MAX)


def _limit(value: Any) -> int:
    """An integer, or its ASCII digits as text (a few: the range is checked later)."""
    if value is None:
        return DEFAULT_PAGE
    if isinstance(value, str):
        digits = value.strip()
        if not (digits.isascii() and digits.isdigit() and len(digits) <= 18):
            raise InvalidArgument("limit", f"limit: must be an integer, got {value[:40]!r}")
        value = int(digits)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument("limit", f"limit: must be an integer, got {type(value).__name__}")
    return value


# Event fields for which null is a value of its own (the client cannot tell its pid).
NULL_IS_A_VALUE = ("pid",)


def _given(arguments: dict[str, Any]) -> dict[str, Any]:
    """The event's fields as sent: absent ones (and null ones, which some clients send
    for every absent argument, except where null is a value) left to their defaults; the
    token apart."""
    return {
        name: value
        for name, value in arguments.items()
        if (value is not None or name in NULL_IS_A_VALUE) and name != TOKEN.name
    }


def _echo_session_id(arguments: dict[str, Any]) -> dict[str, Any]:
    given = arguments.get("session_id")
    return {"session_id": given if isinstance(given, str) else ""}


async def _start(
    service: SessionService, arguments: dict[str, Any], actor: Actor | None
) -> dict[str, Any]:
    return (await service.start(_given(arguments), actor=actor)).model_dump(mode="json")


async def _end(
    service: SessionService, arguments: dict[str, Any], actor: Actor | None
) -> dict[str, Any]:
    external_id = _external_id(arguments)
    ended = await service.end(_given(arguments), external_id=external_id, actor=actor)
    return ended.model_dump(mode="json")


async def _heartbeat(
    service: SessionService, arguments: dict[str, Any], actor: Actor | None
) -> dict[str, Any]:
    external_id = _external_id(arguments)
    checked = {
        "session_id": text_argument(
            "session_id",
            arguments.get("session_id"),
            required=external_id is None,
            max_length=SESSION_ID_MAX,
        ),
        "timestamp": text_argument("timestamp", arguments.get("timestamp"), max_length=64),
        "activity": text_argument("activity", arguments.get("activity"), max_length=32),
        "detail": text_argument("detail", arguments.get("detail"), max_length=200, free=True),
    }
    return await service.heartbeat(**checked, external_id=external_id, actor=actor)


async def _get_session(
    service: SessionService, arguments: dict[str, Any], actor: Actor | None
) -> dict[str, Any]:
    return await service.get_session(_session_id(arguments))


async def _list_sessions(
    service: SessionService, arguments: dict[str, Any], actor: Actor | None
) -> dict[str, Any]:
    filters: dict[str, Any] = _filters(arguments)
    for name in ("started_after", "started_before"):
        filters[name] = text_argument(name, arguments.get(name))
    cursor = text_argument("cursor", arguments.get("cursor"), max_length=1000)
    return await service.list_sessions(
        **filters, limit=_limit(arguments.get("limit")), cursor=cursor
    )


def _filters(arguments: dict[str, Any]) -> dict[str, str | None]:
    """The list_sessions filters among the arguments, checked."""
    return {
        name: text_argument(name, arguments.get(name), max_length=255) for name in FILTER_COLUMNS
    }


async def _session_stats(
    service: SessionService, arguments: dict[str, Any], actor: Actor | None
) -> dict[str, Any]:
    bucket = text_argument("bucket", arguments.get("bucket"), max_length=16)
    group_by = text_argument("group_by", arguments.get("group_by"), max_length=32)
    return await service.session_stats(
        group_by or (None if bucket else "component_name"),
        text_argument("since", arguments.get("since")),
        text_argument("until", arguments.get("until")),
        bucket=bucket,
        **_filters(arguments),
    )


async def _session_events(
    service: SessionService, arguments: dict[str, Any], actor: Actor | None
) -> dict[str, Any]:
    return await service.session_events(_session_id(arguments))


async def _health(
    service: SessionService, arguments: dict[str, Any], actor: Actor | None
) -> dict[str, Any]:
    return await service.health()


async def _list_alert_rules(
    service: SessionService, arguments: dict[str, Any], actor: Actor | None
) -> dict[str, Any]:
    return await alert_rules.list_rules(service)


async def _add_alert_rule(
    service: SessionService, arguments: dict[str, Any], actor: Actor | None
) -> dict[str, Any]:
    return await alert_rules.add_rule(service, arguments)


async def _remove_alert_rule(
    service: SessionService, arguments: dict[str, Any], actor: Actor | None
) -> dict[str, Any]:
    return await alert_rules.remove_rule(service, arguments)


async def _test_alert_rule(
    service: SessionService, arguments: dict[str, Any], actor: Actor | None
) -> dict[str, Any]:
    return await alert_rules.test_rule(service, arguments)


def _echo_name(arguments: dict[str, Any]) -> dict[str, Any]:
    given = arguments.get("name")
    return {"name": given if isinstance(given, str) else ""}


@dataclass(frozen=True)
class Argument:
    name: str
    json_type: str
    description: str


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    scope: str | None  # None: open to every caller
    output: type[BaseModel]
    arguments: tuple[Argument, ...]
    # The tool's work, given who a verified token says the caller is (None without one).
    run: Callable[[SessionService, dict[str, Any], Actor | None], Awaitable[dict[str, Any]]]
    echo: Callable[[dict[str, Any]], dict[str, Any]]  # what an error result repeats


def _json_type(schema: dict[str, Any]) -> str:
    """A field's JSON type: its own, the one beside null of an optional field, or object
    (a nested model)."""
    if "type" in schema:
        return str(schema["type"])
    types = [s["type"] for s in schema.get("anyOf", ()) if s.get("type", "null") != "null"]
    return str(types[0]) if types else "object"


def _event_arguments(event: type[BaseModel]) -> tuple[Argument, ...]:
    """A wire event's fields as tool arguments, as its JSON Schema documents them."""
    properties = event.model_json_schema()["properties"]
    return tuple(
        Argument(name, _json_type(schema), schema.get("description", name))
        for name, schema in properties.items()
    )


TOKEN = Argument("token", "string", "Bearer token (HS256 JWT), when the server requires one")
FILTER_ARGUMENTS = tuple(
    Argument(name, "string", f"Only sessions with this {name}") for name in FILTER_COLUMNS
)

TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool(
            "track_session_start",
            "Record that a shell or agent session started; returns its session_id.",
            WRITE_SCOPE,
            SessionStartResult,
            _event_arguments(SessionStartEvent),
            _start,
            lambda arguments: {"session_id": None},
        ),
        Tool(
            "track_session_end",
            "Record that a session ended; a non-zero exit_code or an exit_reason such as "
            "crash/error/exception/signal/killed marks it crashed.",
            WRITE_SCOPE,
            SessionEndResult,
            (
                *_event_arguments(SessionEndEvent),
                Argument(
                    "external_id",
                    "string",
                    "Instead of session_id: the client's own session id (e.g. Claude Code's); "
                    "ends its latest session, active or abandoned",
                ),
            ),
            _end,
            _echo_session_id,
        ),
        Tool(
            "track_session_heartbeat",
            "Tell session-buddy a session is still alive (keeps it from being abandoned).",
            WRITE_SCOPE,
            HeartbeatResult,
            (
                Argument("session_id", "string", "The session's id"),
                Argument("timestamp", "string", "ISO 8601 time; default: now"),
                Argument(
                    "activity",
                    "string",
                    "What it does now: working, waiting_for_input, idle, failing",
                ),
                Argument(
                    "external_id", "string", "Instead of session_id: the client's own session id"
                ),
                Argument("detail", "string", "A word on the activity, e.g. the error of a failure"),
            ),
            _heartbeat,
            _echo_session_id,
        ),
        Tool(
            "get_session",
            "One session record, or status='not_found'.",
            READ_SCOPE,
            RecordResult,
            (Argument("session_id", "string", "The session's id"),),
            _get_session,
            _echo_session_id,
        ),
        Tool(
            "list_sessions",
            "Sessions, newest first, filtered, one page at a time.",
            READ_SCOPE,
            SessionPage,
            (
                *FILTER_ARGUMENTS,
                Argument("started_after", "string", "Started at or after (ISO 8601)"),
                Argument("started_before", "string", "Started before (ISO 8601)"),
                Argument("limit", "integer", "Page size, 1..500 (default 50)"),
                Argument("cursor", "string", "next_cursor of the previous page"),
            ),
            _list_sessions,
            lambda arguments: {"sessions": [], "next_cursor": None},
        ),
        Tool(
            "session_stats",
            "Per group: counts per state, mean/p50/p95 duration of clean exits, crash and "
            "abandon rates.",
            READ_SCOPE,
            SessionStats,
            (
                Argument(
                    "group_by",
                    "string",
                    "component_name (default without a bucket), shell_type, hostname, username "
                    "or cwd",
                ),
                Argument("bucket", "string", "Also per time bucket: hour, day or week (UTC)"),
                Argument("since", "string", "Sessions started at or after (ISO 8601)"),
                Argument("until", "string", "Sessions started before (ISO 8601)"),
                *FILTER_ARGUMENTS,
            ),
            _session_stats,
            lambda arguments: {
                "group_by": str(arguments.get("group_by") or ""),
                "since": None,
                "until": None,
                "groups": [],
            },
        ),
        Tool(
            "list_session_events",
            "A session's event log, oldest first, each event's payload as it was received.",
            READ_SCOPE,
            SessionEvents,
            (Argument("session_id", "string", "The session's id"),),
            _session_events,
            lambda arguments: _echo_session_id(arguments) | {"events": []},
        ),
        Tool(
            "list_alert_rules",
            "The alert rules, each with its open alerts and undelivered notices; channel "
            "URLs masked.",
            READ_SCOPE,
            alert_rules.RuleList,
            (),
            _list_alert_rules,
            lambda arguments: {"rules": []},
        ),
        Tool(
            "add_alert_rule",
            "Add a rule that notifies Apprise channels when sessions need someone: waiting "
            "(for input, for_seconds, default 60), failing, crashed, abandoned, stuck (longer "
            "than factor x its component's p90, or working but silent for_seconds), "
            "crash-rate (crash-free % of the last hour below `below`).",
            ADMIN_SCOPE,
            alert_rules.RuleChange,
            (
                Argument("name", "string", "The rule's name: letters, digits, . _ -"),
                Argument("condition", "string", ", ".join(CONDITIONS)),
                Argument("channels", "array", "Apprise URLs, 1 to 10 (secrets: never shown)"),
                Argument("for_seconds", "number", "waiting: seconds; stuck: seconds silent"),
                Argument("factor", "number", "stuck: times the p90 (default 3)"),
                Argument("below", "number", "crash-rate: crash-free percent (default 95)"),
                Argument("component_name", "string", "Only sessions of this component"),
                Argument("hostname", "string", "Only sessions on this host"),
                Argument("username", "string", "Only sessions of this user"),
                Argument("cwd_prefix", "string", "Only sessions in this directory or below"),
                Argument("resolved", "boolean", "Also notify when the condition clears"),
                Argument("replace", "boolean", "Replace a rule of the same name"),
            ),
            _add_alert_rule,
            _echo_name,
        ),
        Tool(
            "remove_alert_rule",
            "Remove an alert rule; its open alerts clear without notice.",
            ADMIN_SCOPE,
            alert_rules.RuleChange,
            (Argument("name", "string", "The rule's name"),),
            _remove_alert_rule,
            _echo_name,
        ),
        Tool(
            "test_alert_rule",
            "Send a test notice through every channel of a rule now; says which took it.",
            ADMIN_SCOPE,
            alert_rules.RuleTest,
            (Argument("name", "string", "The rule's name"),),
            _test_alert_rule,
            _echo_name,
        ),
        Tool(
            "health_check",
            "Is the server up and its database reachable? Needs no token.",
            None,
            HealthResult,
            (),
            _health,
            lambda arguments: {},
        ),
    )
}


def unknown_arguments(tool: Tool, arguments: dict[str, Any]) -> list[str]:
    names = {argument.name for argument in tool.arguments} | {TOKEN.name}
    return sorted(name for name in arguments if name not in names)


async def call_tool(
    service: SessionService,
    name: str,
    arguments: dict[str, Any],
    *,
    claims: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run one tool call: credentials (a `token` argument, else `claims` the HTTP layer
    verified), then the tool; every failure comes back as the tool's error result."""
    tool = TOOLS.get(name)
    if tool is None:
        raise InvalidArgument("tool", f"Unknown tool {name!r}: use one of {', '.join(TOOLS)}")
    began = time.perf_counter()
    try:
        if unknown := unknown_arguments(tool, arguments):
            known = ", ".join(argument.name for argument in (*tool.arguments, TOKEN))
            raise InvalidArgument(
                unknown[0], f"Unknown argument(s) {', '.join(unknown)} for {name}: use {known}"
            )
        verified = None
        if tool.scope is not None:
            token = arguments.get("token")
            caller = Caller(token if isinstance(token, str) and token else None, claims)
            verified = service.authorize(caller, tool.scope)
        return await tool.run(service, arguments, actor_of(verified))
    except Exception as exc:
        return tool.echo(arguments) | service.failure(exc)
    finally:
        if service.metrics:
            service.metrics.tool_latency.labels(name).observe(time.perf_counter() - began)
