"""The errors core raises, each with a stable `code` that clients branch on."""

from __future__ import annotations

import re

TYPE_CHECKING = False  # see session_buddy.lazy: on the Claude Code hook's path
if TYPE_CHECKING:
    from typing import ClassVar

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class SessionBuddyError(Exception):
    """Base of every error session-buddy reports to a client."""

    code: ClassVar[str] = "error"


class InvalidArgument(SessionBuddyError, ValueError):
    """An argument is missing, malformed or out of range; the message names it."""

    code = "invalid_argument"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def plain_text(field: str, value: str) -> str:
    """`value`, if it holds no NUL or other control character (ids, names and filters
    are plain text; every engine must answer the same); else InvalidArgument."""
    found = _CONTROL.search(value)
    if found:
        raise InvalidArgument(
            field, f"{field}: must not contain control characters (found {found.group()!r})"
        )
    return value


class RefusedValue(InvalidArgument):
    """The database refused a value a client sent (bad bytes, a number out of range):
    the client's doing, not a failure of the store."""

    def __init__(self) -> None:
        super().__init__(
            "event",
            "a value cannot be stored: it holds characters or a number the database refuses "
            "(such as a NUL character)",
        )


class NotOwner(SessionBuddyError):
    """A session started with another subject's token: only it, or an admin, may change
    it."""

    code = "forbidden"


class ConcurrentChange(SessionBuddyError):
    """Concurrent writers kept changing the same session while this event was decided:
    the store is sound (no failure), and sending the event again decides it anew."""

    code = "conflict"

    def __init__(self) -> None:
        super().__init__("the session changed concurrently while this event was decided; retry")


class StoreUnavailable(SessionBuddyError):
    """The store failed in a way a retry may cure (closed, locked, disconnected)."""

    code = "store_unavailable"


class StoreClosedError(StoreUnavailable, RuntimeError):
    """The store was closed; no more work is accepted."""

    def __init__(self, message: str = "the session store is closed") -> None:
        super().__init__(message)


class StoreOpenError(StoreUnavailable):
    """The store could not be opened (unreadable or corrupt file, unreachable server);
    the message names the file or URL, never a password."""


class NoDatabase(SessionBuddyError):
    """A read found no database where it was pointed (and created none)."""

    code = "no_database"

    def __init__(self, where: str) -> None:
        super().__init__(f"no session database at {where}")
