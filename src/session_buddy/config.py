"""Where the session database lives unless told otherwise."""

from __future__ import annotations

import os
from pathlib import Path

DATABASE_URL_ENV = "SESSION_BUDDY_DATABASE_URL"


def default_database_path() -> Path:
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "session-buddy" / "sessions.db"


def resolve_database_url(database_url: str | None = None) -> str:
    """The explicit URL, else $SESSION_BUDDY_DATABASE_URL, else the embedded default."""
    return (
        database_url or os.environ.get(DATABASE_URL_ENV) or f"sqlite:///{default_database_path()}"
    )
