"""Every setting session-buddy reads from the environment, read in one place.

`Settings.from_environment()` is the only reader of `SESSION_BUDDY_*` and the XDG
variables; command-line flags override what it returns (`Settings.with_flags`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, NamedTuple

DATABASE_URL_ENV = "SESSION_BUDDY_DATABASE_URL"
SQLITE_SYNCHRONOUS_ENV = "SESSION_BUDDY_SQLITE_SYNCHRONOUS"
ABANDON_AFTER_ENV = "SESSION_BUDDY_ABANDON_AFTER"
REAP_INTERVAL_ENV = "SESSION_BUDDY_REAP_INTERVAL"
LOG_LEVEL_ENV = "SESSION_BUDDY_LOG_LEVEL"
SECRET_ENV = "SESSION_BUDDY_SECRET"
SERVER_URL_ENV = "SESSION_BUDDY_SERVER_URL"
TOKEN_ENV = "SESSION_BUDDY_TOKEN"
SPOOL_ENV = "SESSION_BUDDY_SPOOL"
SPOOL_MAX_ENV = "SESSION_BUDDY_SPOOL_MAX"
RETENTION_ENV = "SESSION_BUDDY_RETENTION"

DEFAULT_ABANDON_AFTER = timedelta(hours=24)
DEFAULT_REAP_INTERVAL = 60.0
DEFAULT_SPOOL_MAX = 100_000


_SPAN = re.compile(r"(\d+)\s*(s|m|min|h|d|w)", re.ASCII)
_SPAN_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_span(text: str) -> timedelta | None:
    """`30m`, `24h`, `90d`, `2w` as a timedelta; None when it is not one."""
    found = _SPAN.fullmatch(text.strip().lower())
    return timedelta(seconds=int(found[1]) * _SPAN_UNITS[found[2]]) if found else None


def normalized_server_url(url: str) -> str:
    """One spelling of a server URL for every path (the hook, `emit`, the spool's
    destinations): `HTTP://Host:8678/mcp/` is `http://host:8678/mcp`, and a URL with no
    path means the MCP endpoint, `/mcp`. `stdio:` URLs are left as they are."""
    scheme, separator, rest = url.strip().partition("://")
    if not separator or scheme.lower() not in ("http", "https"):
        return url
    netloc, slash, path = rest.partition("/")
    path = (slash + path).rstrip("/") or "/mcp"
    return f"{scheme.lower()}://{netloc.lower()}{path}"


def without_password(database_url: str) -> str:
    """A database URL as it may be shown or logged: a password in it replaced by ***."""
    scheme, separator, rest = database_url.partition("://")
    credentials, at, place = rest.rpartition("@")
    user, colon, _ = credentials.partition(":")
    return f"{scheme}{separator}{user}:***@{place}" if at and colon else database_url


def debugging(environ: Mapping[str, str] = os.environ) -> bool:
    """Is SESSION_BUDDY_LOG_LEVEL DEBUG? (Read without the other settings, which may be
    the very thing that is malformed.)"""
    return (environ.get(LOG_LEVEL_ENV) or "").upper() == "DEBUG"


def _retention(value: str | None) -> timedelta | None:
    if not value or value.strip().lower() == "off":
        return None
    found = parse_span(value)
    if found is None:
        raise ValueError(f"{RETENTION_ENV}={value!r}: use a duration such as 90d, or off")
    return found


class Settings(NamedTuple):
    """A NamedTuple, not a dataclass: the Claude Code hook loads this on every call."""

    database_url: str
    spool_path: Path
    sqlite_synchronous: str = "FULL"
    abandon_after: timedelta = DEFAULT_ABANDON_AFTER
    reap_interval: float = DEFAULT_REAP_INTERVAL
    log_level: str = "INFO"
    secret: str | None = None
    server_url: str | None = None
    token: str | None = None
    spool_max: int = DEFAULT_SPOOL_MAX
    retention: timedelta | None = None  # the server prunes sessions older than this

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        home = Path.home()
        data_home = Path(environ.get("XDG_DATA_HOME") or home / ".local" / "share")
        state_home = Path(environ.get("XDG_STATE_HOME") or home / ".local" / "state")
        abandon_after = environ.get(ABANDON_AFTER_ENV)
        reap_interval = environ.get(REAP_INTERVAL_ENV)
        spool = environ.get(SPOOL_ENV)
        return cls(
            database_url=environ.get(DATABASE_URL_ENV)
            or f"sqlite:///{data_home / 'session-buddy' / 'sessions.db'}",
            sqlite_synchronous=environ.get(SQLITE_SYNCHRONOUS_ENV) or "FULL",
            abandon_after=(
                timedelta(seconds=float(abandon_after)) if abandon_after else DEFAULT_ABANDON_AFTER
            ),
            reap_interval=float(reap_interval) if reap_interval else DEFAULT_REAP_INTERVAL,
            log_level=(environ.get(LOG_LEVEL_ENV) or "INFO").upper(),
            secret=environ.get(SECRET_ENV) or None,
            server_url=environ.get(SERVER_URL_ENV) or None,
            token=environ.get(TOKEN_ENV) or None,
            spool_path=Path(spool) if spool else state_home / "session-buddy" / "spool.db",
            spool_max=int(environ.get(SPOOL_MAX_ENV) or DEFAULT_SPOOL_MAX),
            retention=_retention(environ.get(RETENTION_ENV)),
        )

    def with_flags(self, **flags: Any) -> Settings:
        """These settings with every flag that was given (not None) taking precedence."""
        return self._replace(**{name: value for name, value in flags.items() if value is not None})
