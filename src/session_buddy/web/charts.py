"""Charts as server-side SVG (no script, no CDN): sessions per time bucket stacked by
final state, on a true time axis (every interval of the window has its place, an empty
one stays empty), and the duration histogram of cleanly ended sessions with p50/p95
marked. The legend is HTML beside them (`legend()`), readable at any size.

Markup is built here from numbers and from labels this module makes itself; every text
goes through `escape` all the same. Colours come from CSS classes (`state-ended`, ...),
so the page's theme applies.
"""

from __future__ import annotations

from html import escape
from typing import Any

STATES = ("ended", "crashed", "abandoned", "active")
# Narrow enough that, scaled to a phone's width, the labels stay readable.
WIDTH, HEIGHT, LEFT, BOTTOM = 480, 170, 34, 22
LABELS = 6  # time labels on an axis, at most


def legend() -> str:
    """The colour of each state, as a list the charts refer to."""
    items = "".join(
        f'<li><svg class="swatch" viewBox="0 0 10 10" aria-hidden="true">'
        f'<rect class="state-{state}" width="10" height="10"/></svg>{state}</li>'
        for state in STATES
    )
    return f'<ul class="legend" aria-label="colours of the final states">{items}</ul>'


def _frame(title: str, body: list[str]) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


def _axis(top: int) -> list[str]:
    plot = HEIGHT - BOTTOM
    return [
        f'<line class="axis" x1="{LEFT}" y1="{plot}" x2="{WIDTH}" y2="{plot}"/>',
        f'<text class="tick" x="{LEFT - 4}" y="14" text-anchor="end">{top}</text>',
        f'<text class="tick" x="{LEFT - 4}" y="{plot}" text-anchor="end">0</text>',
    ]


def stacked_bars(groups: list[dict[str, Any]], label: Any, title: str) -> str:
    """One bar per time bucket (every bucket of the window, empty ones too), stacked by
    state; `label(group)` names a bar."""
    if not any(int(group["total"]) for group in groups):
        return _frame(title, ['<text class="empty" x="50%" y="50%">no sessions</text>'])
    top = max(int(group["total"]) for group in groups) or 1
    plot, step = HEIGHT - BOTTOM, (WIDTH - LEFT) / len(groups)
    every = max(1, -(-len(groups) // LABELS))  # label every n-th bucket
    body = _axis(top)
    for index, group in enumerate(groups):
        x, y = LEFT + index * step, float(plot)
        for state in STATES:
            count = int(group[state])
            if not count:
                continue
            height = count / top * (plot - 8)
            y -= height
            body.append(
                f'<rect class="state-{state}" x="{x + 1:.1f}" y="{y:.1f}" '
                f'width="{max(step - 2, 1):.1f}" height="{height:.1f}">'
                f"<title>{escape(label(group))}: {count} {state}</title></rect>"
            )
        if index % every == 0:
            body.append(
                f'<text class="tick" x="{x:.1f}" y="{HEIGHT - 6}" '
                f'text-anchor="start">{escape(label(group))}</text>'
            )
    return _frame(title, body)


def whole_window(
    groups: list[dict[str, Any]], since_us: int, until_us: int, size_us: int, start: Any
) -> list[dict[str, Any]]:
    """Every bucket of [since, until) in order, those without sessions as empty groups;
    `start(group)` is a group's bucket start in microseconds."""
    have = {start(group): group for group in groups}
    first = since_us - since_us % size_us
    empty = dict.fromkeys(("total", *STATES), 0)
    return [
        have.get(at, empty | {"bucket_us": at}) | {"bucket_us": at}
        for at in range(first, until_us, size_us)
    ]


def histogram(bins: list[dict[str, Any]], p50: float | None, p95: float | None) -> str:
    """Bars per duration bin; p50 and p95 marked in the bins they fall in."""
    title = "duration of cleanly ended sessions"
    top = max((int(b["count"]) for b in bins), default=0) or 1
    plot, step = HEIGHT - BOTTOM, (WIDTH - LEFT) / len(bins)
    body = _axis(top)
    for index, item in enumerate(bins):
        x = LEFT + index * step
        height = int(item["count"]) / top * (plot - 8)
        body.append(
            f'<rect class="state-ended" x="{x + 2:.1f}" y="{plot - height:.1f}" '
            f'width="{step - 4:.1f}" height="{height:.1f}">'
            f"<title>{escape(item['label'])}: {item['count']}</title></rect>"
            f'<text class="tick" x="{x + step / 2:.1f}" y="{HEIGHT - 6}" '
            f'text-anchor="middle">{escape(item["label"])}</text>'
        )
    for name, value in (("p50", p50), ("p95", p95)):
        marked = _bin_of(bins, value)
        if marked is None:
            continue
        x = LEFT + (marked + 0.5) * step
        body.append(
            f'<line class="marker" x1="{x:.1f}" y1="4" x2="{x:.1f}" y2="{plot}"/>'
            f'<text class="marker-label" x="{x + 3:.1f}" y="{14 if name == "p50" else 28}">'
            f"{name}</text>"
        )
    return _frame(title, body)


def _bin_of(bins: list[dict[str, Any]], seconds: float | None) -> int | None:
    if seconds is None:
        return None
    for index, item in enumerate(bins):
        if item["upper_seconds"] is None or seconds < item["upper_seconds"]:
            return index
    return None
