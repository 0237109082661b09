"""What every tool shares: its arguments checked one by one, and the part of its result
that says what went wrong."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from session_buddy.core.errors import InvalidArgument, plain_text
from session_buddy.mcp.event_models import ERROR_CODE_DESCRIPTION


class Failure(BaseModel):
    """The part of every result that says what went wrong."""

    error: str | None = None
    error_code: str | None = Field(default=None, description=ERROR_CODE_DESCRIPTION)


def text_argument(
    name: str, value: Any, *, required: bool = False, max_length: int = 500, free: bool = False
) -> str | None:
    """A string argument, checked: None when absent, InvalidArgument when wrong. Plain
    text (no control characters) unless `free`: ids, names, filters, times."""
    if value is None or value == "":
        if required:
            raise InvalidArgument(name, f"{name}: field required")
        return None
    if not isinstance(value, str):
        raise InvalidArgument(name, f"{name}: must be a string, got {type(value).__name__}")
    if len(value) > max_length:
        raise InvalidArgument(name, f"{name}: must have at most {max_length} characters")
    return value if free else plain_text(name, value)
