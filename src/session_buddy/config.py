"""Every setting session-buddy reads from the environment, read in one place.

`Settings.from_environment()` is the only reader of `SESSION_BUDDY_*` and the XDG
variables; command-line flags override what it returns (`Settings.with_flags`).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # see session_buddy.lazy: the Claude Code hook loads this module
if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import timedelta
    from pathlib import Path
    from typing import Any

DATABASE_URL_ENV = "SESSION_BUDDY_DATABASE_URL"
SQLITE_SYNCHRONOUS_ENV = "SESSION_BUDDY_SQLITE_SYNCHRONOUS"
ABANDON_AFTER_ENV = "SESSION_BUDDY_ABANDON_AFTER"
REAP_INTERVAL_ENV = "SESSION_BUDDY_REAP_INTERVAL"
LOG_LEVEL_ENV = "SESSION_BUDDY_LOG_LEVEL"
SECRET_ENV = "SESSION_BUDDY_SECRET"
SERVER_URL_ENV = "SESSION_BUDDY_SERVER_URL"
TOKEN_ENV = "SESSION_BUDDY_TOKEN"
TOKEN_FILE_ENV = "SESSION_BUDDY_TOKEN_FILE"
SPOOL_ENV = "SESSION_BUDDY_SPOOL"
SPOOL_MAX_ENV = "SESSION_BUDDY_SPOOL_MAX"
RETENTION_ENV = "SESSION_BUDDY_RETENTION"
PUBLIC_URL_ENV = "SESSION_BUDDY_PUBLIC_URL"  # the dashboard's address, for links in alerts
ALERT_RATE_ENV = "SESSION_BUDDY_ALERT_RATE"  # notices per channel and minute
HEARTBEAT_ENV = "SESSION_BUDDY_HEARTBEAT"  # seconds between heartbeats of shells, emitters
RELAY_IDLE_ENV = "SESSION_BUDDY_RELAY_IDLE"  # seconds a Claude Code hook relay waits idle

DEFAULT_ABANDON_AFTER_SECONDS = 24 * 3600.0
DEFAULT_REAP_INTERVAL = 60.0
DEFAULT_SPOOL_MAX = 100_000
DEFAULT_ALERT_RATE = 20
DEFAULT_HEARTBEAT = 600


# OpenTelemetry's own variables, as its SDK reads them (the exporter reads the rest:
# endpoint, headers, timeout, compression, certificates).
OTEL_EXPORTED_PROTOCOL = "http/protobuf"


def otel_logs_export(environ: Mapping[str, str] = os.environ) -> bool:
    """Does the server send its sessions as OpenTelemetry logs? Yes when
    OTEL_LOGS_EXPORTER is `otlp`, or unset while an OTLP endpoint is named; never with
    OTEL_SDK_DISABLED=true. ValueError names a setting it cannot honour."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_LOGS_EXPORTER", "").strip().lower()
    endpoint = environ.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if exporter in ("none", "") and (exporter == "none" or not endpoint):
        return False
    if exporter not in ("otlp", ""):
        raise ValueError(f"OTEL_LOGS_EXPORTER={exporter}: session-buddy exports with otlp or none")
    for name in ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = environ.get(name, "").strip().lower()
        if protocol and protocol != OTEL_EXPORTED_PROTOCOL:
            raise ValueError(
                f"{name}={protocol}: session-buddy exports logs with {OTEL_EXPORTED_PROTOCOL} "
                "(OpenTelemetry's Python exporter has no http/json)"
            )
        if protocol:
            break
    return True


_SPAN = r"(\d+)\s*(s|m|min|h|d|w)"
_SPAN_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_span(text: str) -> timedelta | None:
    """`30m`, `24h`, `90d`, `2w` as a timedelta; None when it is not one."""
    import re
    from datetime import timedelta

    found = re.fullmatch(_SPAN, text.strip().lower(), re.ASCII)
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


def _seconds(seconds: float) -> timedelta:
    from datetime import timedelta  # on use: the hook never needs it

    return timedelta(seconds=seconds)


def _retention(value: str | None) -> timedelta | None:
    if not value or value.strip().lower() == "off":
        return None
    found = parse_span(value)
    if found is None:
        raise ValueError(f"{RETENTION_ENV}={value!r}: use a duration such as 90d, or off")
    return found


def _home_folder(environ: Mapping[str, str], variable: str, default: str) -> str:
    """An XDG base folder ($XDG_DATA_HOME, $XDG_STATE_HOME), else its default in $HOME."""
    return environ.get(variable) or os.path.join(os.path.expanduser("~"), default)


def database_url(environ: Mapping[str, str] = os.environ) -> str:
    """$SESSION_BUDDY_DATABASE_URL, else the embedded store under $XDG_DATA_HOME."""
    data_home = _home_folder(environ, "XDG_DATA_HOME", os.path.join(".local", "share"))
    default = os.path.join(data_home, "session-buddy", "sessions.db")
    return environ.get(DATABASE_URL_ENV) or f"sqlite:///{default}"


def spool_path(environ: Mapping[str, str] = os.environ) -> str:
    """$SESSION_BUDDY_SPOOL, else spool.db under $XDG_STATE_HOME."""
    state_home = _home_folder(environ, "XDG_STATE_HOME", os.path.join(".local", "state"))
    return environ.get(SPOOL_ENV) or os.path.join(state_home, "session-buddy", "spool.db")


def spool_max(environ: Mapping[str, str] = os.environ) -> int:
    """$SESSION_BUDDY_SPOOL_MAX: records kept per destination."""
    return _whole_number(environ, SPOOL_MAX_ENV, DEFAULT_SPOOL_MAX)


def _whole_number(environ: Mapping[str, str], name: str, default: int) -> int:
    given = environ.get(name)
    try:
        return int(given) if given else default
    except ValueError as exc:
        raise ValueError(f"{name}={given!r}: use a whole number") from exc


def token_of(environ: Mapping[str, str] = os.environ) -> str | None:
    """$SESSION_BUDDY_TOKEN, else the token in $SESSION_BUDDY_TOKEN_FILE, else none."""
    token_file = environ.get(TOKEN_FILE_ENV)
    return environ.get(TOKEN_ENV) or (read_token_file(token_file) if token_file else None)


def read_token_file(path: str) -> str:
    """The token kept in a file (its first line), for hooks and settings files that must
    not hold the token itself; ValueError naming the file when it cannot be read."""
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as file:
            token = file.readline().strip()
    except OSError as exc:
        raise ValueError(f"cannot read the token file {path}: {exc.strerror or exc}") from exc
    if not token:
        raise ValueError(f"the token file {path} is empty")
    return token


_FIELDS = (
    *("database_url", "spool_path", "sqlite_synchronous", "abandon_after", "reap_interval"),
    *("log_level", "secret", "server_url", "token", "spool_max", "retention"),
    *("public_url", "alert_rate", "heartbeat"),
)


class Settings:
    """Every setting. A plain class, not a NamedTuple or a dataclass: the Claude Code
    hook loads this on every event, and `typing` or `dataclasses` would cost it ~10 ms."""

    __slots__ = _FIELDS

    def __init__(
        self,
        database_url: str,
        spool_path: Path,
        sqlite_synchronous: str = "FULL",
        abandon_after: timedelta | None = None,  # default: DEFAULT_ABANDON_AFTER_SECONDS
        reap_interval: float = DEFAULT_REAP_INTERVAL,
        log_level: str = "INFO",
        secret: str | None = None,
        server_url: str | None = None,
        token: str | None = None,
        spool_max: int = DEFAULT_SPOOL_MAX,
        retention: timedelta | None = None,  # the server prunes sessions quiet this long
        public_url: str | None = None,  # where people reach the dashboard (links in alerts)
        alert_rate: int = DEFAULT_ALERT_RATE,  # notices per channel and minute, at most
        heartbeat: int = DEFAULT_HEARTBEAT,  # seconds between an emitter's heartbeats
    ) -> None:
        self.database_url = database_url
        self.spool_path = spool_path
        self.sqlite_synchronous = sqlite_synchronous
        if abandon_after is None:
            abandon_after = _seconds(DEFAULT_ABANDON_AFTER_SECONDS)
        self.abandon_after = abandon_after
        self.reap_interval = reap_interval
        self.log_level = log_level
        self.secret = secret
        self.server_url = server_url
        self.token = token
        self.spool_max = spool_max
        self.retention = retention
        self.public_url = public_url
        self.alert_rate = alert_rate
        self.heartbeat = heartbeat

    def __repr__(self) -> str:
        shown = (f"{name}={getattr(self, name)!r}" for name in _FIELDS if name != "secret")
        return f"Settings({', '.join(shown)})"

    def _replace(self, **changes: Any) -> Settings:
        return Settings(**{name: getattr(self, name) for name in _FIELDS} | changes)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        from pathlib import Path  # on use: the hook reads its few settings on its own

        abandon_after = environ.get(ABANDON_AFTER_ENV)
        reap_interval = environ.get(REAP_INTERVAL_ENV)
        server_url = environ.get(SERVER_URL_ENV)
        return cls(
            database_url=database_url(environ),
            sqlite_synchronous=environ.get(SQLITE_SYNCHRONOUS_ENV) or "FULL",
            abandon_after=_seconds(float(abandon_after)) if abandon_after else None,
            reap_interval=float(reap_interval) if reap_interval else DEFAULT_REAP_INTERVAL,
            log_level=(environ.get(LOG_LEVEL_ENV) or "INFO").upper(),
            secret=environ.get(SECRET_ENV) or None,
            server_url=normalized_server_url(server_url) if server_url else None,
            token=token_of(environ),
            spool_path=Path(spool_path(environ)),
            spool_max=spool_max(environ),
            retention=_retention(environ.get(RETENTION_ENV)),
            public_url=(environ.get(PUBLIC_URL_ENV) or "").rstrip("/") or None,
            alert_rate=_whole_number(environ, ALERT_RATE_ENV, DEFAULT_ALERT_RATE),
            heartbeat=_whole_number(environ, HEARTBEAT_ENV, DEFAULT_HEARTBEAT),
        )

    def with_flags(self, **flags: Any) -> Settings:
        """These settings with every flag that was given (not None) taking precedence."""
        return self._replace(**{name: value for name, value in flags.items() if value is not None})
