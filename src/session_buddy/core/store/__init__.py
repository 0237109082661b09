"""Session stores: pick the engine from a SQLAlchemy-style database URL."""

from __future__ import annotations

from session_buddy.core.errors import InvalidArgument
from session_buddy.lazy import lazy_names

TYPE_CHECKING = False  # see session_buddy.lazy: the hook loads a module of this package
if TYPE_CHECKING:
    from session_buddy.core.store.base import Row, Store, Tx
    from session_buddy.core.store.sqlite import SQLiteStore

__all__ = ["Row", "SQLiteStore", "Store", "Tx", "open_store"]
_HOMES = {
    "Row": "session_buddy.core.store.base",
    "Store": "session_buddy.core.store.base",
    "Tx": "session_buddy.core.store.base",
    "SQLiteStore": "session_buddy.core.store.sqlite",
}
__getattr__ = lazy_names(__name__, _HOMES)

POSTGRES_EXTRA_HINT = "PostgreSQL support is not installed: pip install 'session-buddy[postgres]'"


def open_store(url: str, *, sqlite_synchronous: str = "FULL", read_only: bool = False) -> Store:
    """Open (creating and migrating as needed) the store a database URL names; with
    `read_only`, only an existing, current one, without taking any lock.

    `sqlite:///relative.db`, `sqlite:////absolute/path.db`, `postgresql://user@host/db`.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise InvalidArgument(
            "database_url",
            f"Invalid database URL {url!r}: expected sqlite:///path or postgresql://",
        )
    engine = scheme.split("+")[0].lower()
    if engine == "sqlite":
        if not rest.startswith("/") or rest == "/":
            raise InvalidArgument(
                "database_url", f"Invalid SQLite URL {url!r}: expected sqlite:///path/to/file.db"
            )
        path = rest[1:].split("?")[0]
        from session_buddy.core.store.sqlite import SQLiteStore

        return SQLiteStore(path, synchronous=sqlite_synchronous, read_only=read_only)
    if engine in ("postgresql", "postgres"):
        try:
            from session_buddy.core.store.postgres import PostgresStore
        except ImportError as exc:
            raise InvalidArgument("database_url", f"{POSTGRES_EXTRA_HINT} ({exc})") from exc
        return PostgresStore(url, read_only=read_only)
    raise InvalidArgument(
        "database_url",
        f"Unsupported database URL scheme {scheme!r}: use sqlite:/// or postgresql://",
    )
