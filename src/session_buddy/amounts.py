"""Amounts for people: money, counts and a session's usage, as the CLI and the dashboard
show them."""

from __future__ import annotations

from typing import Any

from session_buddy.timestamps import human_duration


def money(usd: float | None) -> str:
    """US dollars to the cent, or to four places below one cent (`$0.0004`)."""
    if usd is None:
        return "-"
    return f"${usd:,.2f}" if usd >= 0.01 or usd == 0 else f"${usd:.4f}"


def count(number: float | None) -> str:
    """A count as people read it: `950`, `12.3k`, `4.1M`."""
    if number is None:
        return "-"
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if number >= size:
            return f"{number / size:.1f}{suffix}"
    return f"{number:.0f}"


def usage_lines(usage: dict[str, Any]) -> dict[str, str]:
    """A session's usage as `sessions show` and its dashboard page list it, a line per
    subject."""
    lines = {
        "cost": money(usage["cost_usd"]),
        "api requests": f"{usage['api_requests']} ({usage['api_errors']} failed)",
        "tokens": (
            f"{count(usage['tokens'])}: {count(usage['input_tokens'])} in, "
            f"{count(usage['output_tokens'])} out, {count(usage['cache_read_tokens'])} "
            f"cache read, {count(usage['cache_creation_tokens'])} cache write"
        ),
        "tool calls": f"{usage['tool_calls']} ({usage['tool_failures']} failed)",
        "prompts": str(usage["prompts"]),
        "active time": human_duration(usage["active_seconds"]),
    }
    details = {
        "models": [
            f"{m['model']} {m['requests']}× {money(m['cost_usd'])}" for m in usage["models"]
        ],
        "tools": [
            f"{t['tool']} {t['calls']}×" + (f" ({t['failures']} failed)" if t["failures"] else "")
            for t in usage["tools"]
        ],
        "api errors": [f"{e['error']} {e['count']}×" for e in usage["errors"]],
    }
    return lines | {name: ", ".join(items) for name, items in details.items() if items}
