"""Charts as SVG drawn on the server by pygal (no JavaScript, nothing fetched by the browser).

Pages show them with ``<img src=…svg>``: an SVG loaded as an image runs no script, so the
small config script pygal embeds stays inert, and every label is escaped by pygal's XML
writer anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pygal
from fastapi import Response
from pygal.style import Style

MIB = 1024 * 1024
_STYLE = Style(
    background="white",
    plot_background="white",
    font_family="system-ui, sans-serif",
    colors=("#2563eb", "#d97706", "#059669"),
    label_font_size=11,
    major_label_font_size=11,
    legend_font_size=12,
)
# Only the chart's own inline styles; no script, no fetch.
_CSP = "default-src 'none'; style-src 'unsafe-inline'"


def _chart(title: str) -> pygal.DateTimeLine:
    return pygal.DateTimeLine(
        js=[],
        disable_xml_declaration=True,
        width=860,
        height=300,
        style=_STYLE,
        title=title,
        x_label_rotation=20,
        truncate_label=-1,
        show_dots=True,
        dots_size=2,
        x_labels_major_count=6,
        show_minor_x_labels=False,
        legend_at_bottom=True,
        no_data_text="no data yet",
        x_value_formatter=lambda moment: moment.strftime("%d %b %H:%M"),
    )


def svg(chart: pygal.DateTimeLine) -> Response:
    return Response(
        chart.render(is_unicode=True),
        media_type="image/svg+xml",
        headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-store"},
    )


def backups(points: Sequence[tuple[datetime, int | None, float | None]]) -> Response:
    """Size (MiB) and duration (s) of an application's backups over time."""
    chart = _chart("Backups: size and duration")
    timed = [(at, seconds) for at, _, seconds in points if seconds is not None]
    if timed:  # pygal cannot scale an empty secondary axis; no points shows "no data yet"
        chart.add("size (MiB)", [(at, (size or 0) / MIB) for at, size, _ in points])
        chart.add("duration (s)", timed, secondary=True)
    return svg(chart)


def usage(samples: Sequence[Any], capacity_bytes: int) -> Response:
    """A storage's own bytes (cairn's repositories) over time, with its capacity."""
    chart = _chart("Storage usage (MiB)")
    if samples:  # no series at all: pygal writes "no data yet" on an empty frame
        chart.add("used by backups", [(s.sampled_at, s.used_bytes / MIB) for s in samples])
        chart.add(
            "capacity",
            [
                (samples[0].sampled_at, capacity_bytes / MIB),
                (samples[-1].sampled_at, capacity_bytes / MIB),
            ],
        )
    return svg(chart)
