"""KPI charts as inline SVG, drawn on the server: no JavaScript chart library to load, pin or
audit, and every chart works with scripts off. Each has a text title and description for screen
readers (role="img"), and the page shows the same figures as a table beside it."""

from __future__ import annotations

from html import escape

from markupsafe import Markup

# GOV.UK Design System colours, each at least 3:1 against white (WCAG 1.4.11, non-text contrast).
PALETTE = ["#1d70b8", "#d4351c", "#00703c", "#4c2c92", "#b58840", "#f47738", "#505a5f", "#912b88", "#28a197"]
TEXT = "#0b0c0c"


def _number(value: float) -> str:
    return f"{value:,.1f}".removesuffix(".0")


def bars(
    chart_id: str,
    title: str,
    rows: list[tuple[str, dict[str, float]]],
    *,
    unit: str = "",
    series: list[str] | None = None,
) -> Markup:
    """Horizontal bars, one per row, stacked by series (one series: plain bars)."""
    series = series or sorted({s for _, values in rows for s in values})
    label_width, bar_width, row_height = 210, 420, 26
    width = label_width + bar_width + 90
    legend: list[str] = []
    x: float = label_width
    y = 4  # legend entries, wrapped onto as many lines as they need
    for i, name in enumerate(series if len(series) > 1 else []):
        if x + 24 + 8 * len(name) > width and x > label_width:
            x, y = label_width, y + 20
        legend.append(
            f'<rect x="{x}" y="{y}" width="12" height="12" fill="{PALETTE[i % len(PALETTE)]}"/>'
            f'<text x="{x + 16}" y="{y + 11}" font-size="13" fill="{TEXT}">{escape(name)}</text>'
        )
        x += 24 + 8 * len(name)
    legend_height = y + 20 if legend else 0
    height = legend_height + max(1, len(rows)) * row_height + 8
    largest = max((sum(v.values()) for _, v in rows), default=0) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="console-chart" viewBox="0 0 {width} {height}" '
        f'role="img" aria-labelledby="{chart_id}-title {chart_id}-desc">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<desc id="{chart_id}-desc">{escape(_describe(rows, unit))}</desc>',
    ]
    parts += legend
    if not rows:
        parts.append(
            f'<text x="0" y="{legend_height + 18}" font-size="14" fill="{TEXT}">No data for this period</text>'
        )
    for r, (label, values) in enumerate(rows):
        y = legend_height + r * row_height
        parts.append(
            f'<text x="{label_width - 8}" y="{y + 17}" font-size="13" text-anchor="end" '
            f'fill="{TEXT}">{escape(label)}</text>'
        )
        x = float(label_width)
        for i, name in enumerate(series):
            w = bar_width * values.get(name, 0) / largest
            if w > 0:
                parts.append(
                    f'<rect x="{x:.1f}" y="{y + 4}" width="{w:.1f}" height="{row_height - 8}" '
                    f'fill="{PALETTE[i % len(PALETTE)]}">'
                    f"<title>{escape(label)}, {escape(name)}: {_number(values[name])}{escape(unit)}</title></rect>"
                )
                x += w
        parts.append(
            f'<text x="{x + 6:.1f}" y="{y + 17}" font-size="13" '
            f'fill="{TEXT}">{_number(sum(values.values()))}{escape(unit)}</text>'
        )
    parts.append("</svg>")
    # At 390 px the chart keeps a readable size and scrolls inside its box, as tables do (issue 19:
    # shrunk to the phone's width, its 13 px labels were drawn at 6 px).
    return Markup(
        f'<div class="console-table-scroll console-chart-box" tabindex="0" role="region" '
        f'aria-label="{escape(title)}, scrolls sideways">' + "".join(parts) + "</div>"
    )


def _describe(rows: list[tuple[str, dict[str, float]]], unit: str) -> str:
    if not rows:
        return "No data for this period."
    return (
        "; ".join(
            f"{label}: " + ", ".join(f"{k} {_number(v)}{unit}" for k, v in values.items()) for label, values in rows
        )
        + "."
    )
