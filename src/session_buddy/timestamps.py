"""The ISO 8601 rule of the wire format and the UTC microsecond clock of the store.

Standard library only: the wire models and core both stand on it, unaware of each other.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache

_ISO_8601 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})"
    r"(?:[.,](\d{1,9}))?"
    r"([Zz]|[+-]\d{2}(?::?\d{2})?)?",
    re.ASCII,  # ASCII digits only: "２０２６" is not a year
)
EXAMPLE = "2026-02-06T12:34:56.789Z"


@lru_cache(maxsize=4096)
def parse_timestamp(value: str) -> datetime:
    """Parse an ISO 8601 date-time into an aware UTC datetime.

    The instant must be real (no month 13, no second 67); a missing offset means UTC.
    Raises ValueError with the key phrases clients match on.
    """
    if "T" not in value and "t" not in value:
        raise ValueError(
            f"Invalid ISO 8601 timestamp: {value!r} "
            f"(missing time component, expected format: {EXAMPLE})"
        )
    match = _ISO_8601.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"Invalid ISO 8601 timestamp: {value!r} (expected format: {EXAMPLE})")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        instant = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=_zone(offset),
        )
        return instant.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"Invalid ISO 8601 timestamp: {value!r} ({exc})") from exc


def _zone(offset: str | None) -> timezone:
    if offset is None or offset in ("Z", "z"):
        return UTC
    sign = -1 if offset[0] == "-" else 1
    digits = offset[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    if hours > 23 or minutes > 59:
        raise ValueError(f"UTC offset {offset} out of range")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def to_micros(instant: datetime) -> int:
    """Microseconds since the Unix epoch, exact (no float rounding)."""
    delta = instant - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)


def format_micros(micros: int | None) -> str | None:
    """ISO 8601 UTC text for a stored time, or None."""
    if micros is None:
        return None
    return from_micros(micros).isoformat(timespec="microseconds").replace("+00:00", "Z")


def now_micros() -> int:
    return time.time_ns() // 1000


def now_iso() -> str:
    """The current instant as ISO 8601 UTC text (microseconds, `Z`)."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def human_duration(seconds: float | None) -> str:
    """A duration for people: `4.2s`, `42s`, `5m 03s`, `1h 10m`, `3d 4h`; `-` for none."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def human_age(then: datetime, now: datetime) -> str:
    """How long ago, in words: `just now`, `3 min ago`, `2 h ago`, `6 days ago`."""
    seconds = (now - then).total_seconds()
    if seconds < 0:
        return "in the future"
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    days = int(seconds // 86400)
    return f"{days} day{'s' if days > 1 else ''} ago"


def session_duration(status: str, seconds: float | None) -> str:
    """A finished session's duration for people: an abandoned one's is `≥ 12m 03s`, since
    it is known only up to the last event heard from it."""
    shown = human_duration(seconds)
    return f"≥ {shown}" if status == "abandoned" and seconds is not None else shown
