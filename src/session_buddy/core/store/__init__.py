"""Session stores: pick the engine from a SQLAlchemy-style database URL."""

from __future__ import annotations

import os

from session_buddy.core.store.base import Row, Store, StoreClosedError, Tx
from session_buddy.core.store.sqlite import SQLiteStore

SQLITE_SYNCHRONOUS_ENV = "SESSION_BUDDY_SQLITE_SYNCHRONOUS"

__all__ = ["Row", "SQLiteStore", "Store", "StoreClosedError", "Tx", "open_store"]


def open_store(url: str) -> Store:
    """Open (creating and migrating as needed) the store a database URL names.

    `sqlite:///relative.db`, `sqlite:////absolute/path.db`, `postgresql://user@host/db`.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"Invalid database URL {url!r}: expected sqlite:///path or postgresql://")
    engine = scheme.split("+")[0].lower()
    if engine == "sqlite":
        if not rest.startswith("/") or rest == "/":
            raise ValueError(f"Invalid SQLite URL {url!r}: expected sqlite:///path/to/file.db")
        path = rest[1:].split("?")[0]
        synchronous = os.environ.get(SQLITE_SYNCHRONOUS_ENV, "FULL")
        return SQLiteStore(path, synchronous=synchronous)
    if engine in ("postgresql", "postgres"):
        from session_buddy.core.store.postgres import PostgresStore

        return PostgresStore(url)
    raise ValueError(f"Unsupported database URL scheme {scheme!r}: use sqlite:/// or postgresql://")
