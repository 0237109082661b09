"""What the session logic needs from a database, whichever engine is behind it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
Row = Mapping[str, Any]


class Tx(Protocol):
    """One open transaction. SQL uses numbered placeholders (`$1`, `$2`, ...), which
    SQLite and PostgreSQL both understand natively; a number may appear twice."""

    dialect: str
    # Appended to a SELECT in a write transaction: lock the rows it returns until the
    # end of the transaction ("" on SQLite, whose writer holds the whole database), and
    # the same skipping rows another transaction holds (for upkeep, which must not wait).
    lock_rows: str
    lock_free_rows: str
    # While someone listens for transitions (an exporter), the events the work logged;
    # None otherwise (see SessionLifecycleManager.on_transitions).
    observed: list[Any] | None

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Execute a statement and return the number of rows it changed."""
        ...


class Store(Protocol):
    """A session database: transactions in, results out, safe to share across tasks."""

    url: str
    failing: str | None  # why writes fail now (disk full, read-only, connection lost)

    async def write(self, work: Callable[[Tx], T]) -> T:
        """Run `work` in a write transaction; return once it is durably committed. The
        work and its commit never run on the caller's event loop thread."""
        ...

    async def read(self, work: Callable[[Tx], T]) -> T:
        """Run `work` in a read-only snapshot."""
        ...

    async def close(self) -> None: ...
