"""Amounts for people: money and counts, as the CLI and the dashboard show them."""

from __future__ import annotations


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
