"""Time flags as people type them: RFC 3339, a date (local midnight), `today`,
`yesterday`, or a time ago (`30m`, `24h`, `7d`, `2w`); errors name the flag."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import click

from session_buddy.config import parse_span
from session_buddy.timestamps import format_micros, parse_timestamp, to_micros

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


def resolve(text: str, now: datetime | None = None) -> datetime:
    """The instant a time flag means (aware, UTC); ValueError naming what is accepted."""
    now = now or datetime.now(UTC)
    word = text.strip().lower()
    if word in ("today", "yesterday"):
        midnight = datetime.combine(now.astimezone().date(), time()).astimezone()
        return (midnight - timedelta(days=word == "yesterday")).astimezone(UTC)
    ago = parse_span(word)
    if ago is not None:
        return now - ago
    if _DATE.fullmatch(word):
        return datetime.combine(date.fromisoformat(word), time()).astimezone().astimezone(UTC)
    try:
        return parse_timestamp(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use RFC 3339 (2026-11-26T14:00:00Z), a date "
            "(2026-11-26), today, yesterday, or a time ago (30m, 24h, 7d, 2w)"
        ) from None


class When(click.ParamType[str]):
    """A time flag; its value is the ISO 8601 UTC text the tools take."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return str(format_micros(to_micros(resolve(str(value)))))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Span(click.ParamType[timedelta]):
    """A length of time: `90d`, `24h`, ..."""

    name = "duration"

    def __init__(self, *, bare_seconds: bool = False) -> None:
        self.bare_seconds = bare_seconds  # a plain number means seconds (`--for 60`)

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:
        found = parse_span(str(value))
        if found is None and self.bare_seconds and str(value).strip().isascii():
            text = str(value).strip()
            found = timedelta(seconds=int(text)) if text.isdigit() else None
        if found is None:
            self.fail(f"{value!r} is not a duration: use e.g. 30m, 24h, 90d, 2w", param, ctx)
        return found
