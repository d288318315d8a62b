"""How the ``homecare`` commands print: plain text laid out for the width it will be read at, or
JSON only.

The width is the terminal's (or ``COLUMNS``), and 80 in a pipe or a file. A table is printed as
columns when they fit: numbers and ids never break, free text wraps at spaces, headers wrap. When
even that does not fit (many columns, a narrow terminal), each row is printed as a block of
``header: value`` lines instead, so no value is ever cut off or dropped (rich's tables, sized to
80 columns in a pipe, squeezed whole columns to nothing). No colour and no box drawing: the output
reads the same in a terminal, a file, ``less`` and ``grep``.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import typer

GAP = "  "  # between columns
MIN_WRAP = 8  # a free-text column narrower than this is not worth wrapping into: print blocks instead
MIN_WIDTH = 20


def width() -> int:
    """Characters per line: ``COLUMNS`` if set, else the terminal's, else (a pipe, a file) 80."""
    return max(MIN_WIDTH, shutil.get_terminal_size((80, 24)).columns)


@dataclass(frozen=True)
class Column:
    """A table column: ``right`` aligns numbers; ``wrap`` lets free text wrap at spaces (the other
    columns' cells are never broken)."""

    header: str
    right: bool = False
    wrap: bool = False


def wrap(text: str, columns: int, indent: str = "") -> list[str]:
    """``text`` in lines of at most ``columns`` characters, broken at spaces only (a longer word
    keeps its own line whole)."""
    lines = textwrap.wrap(
        text,
        columns,
        initial_indent=indent,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return lines or [indent.rstrip()]


def paragraph(text: str, columns: int | None = None) -> str:
    """A line of prose wrapped to the width."""
    return "\n".join(wrap(text, columns or width()))


def _longest_word(text: str) -> int:
    return max((len(w) for w in text.split()), default=0)


def _widths(columns: Sequence[Column], rows: Sequence[Sequence[str]], room: int) -> list[int] | None:
    """Each column's width, or None when the columns cannot fit in ``room``."""
    natural = [max([len(c.header), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    gaps = len(GAP) * (len(columns) - 1)
    if sum(natural) + gaps <= room:
        return natural
    least = []
    for i, c in enumerate(columns):
        header = _longest_word(c.header)
        if c.wrap:
            words = max([header, *(_longest_word(r[i]) for r in rows)])
            least.append(min(natural[i], max(words, MIN_WRAP)))
        else:
            least.append(max([header, *(len(r[i]) for r in rows)]))
    spare = room - gaps - sum(least)
    if spare < 0:
        return None
    wants = [n - m for n, m in zip(natural, least, strict=True)]
    total = sum(wants)
    widths = [m + (spare * w // total if total else 0) for m, w in zip(least, wants, strict=True)]
    return [min(w, n) for w, n in zip(widths, natural, strict=True)]


def table(
    columns: Sequence[Column], rows: Sequence[Sequence[Any]], *, title: str | None = None, room: int | None = None
) -> str:
    """Rows under a title, as columns when they fit in ``room`` characters (default: the
    width), else as one block of ``header: value`` lines per row. Cells are shown with ``str``."""
    room = room or width()
    cells = [[str(v) for v in row] for row in rows]
    out = wrap(title, room) if title else []
    if not cells:
        return "\n".join([*out, "(none)"])
    widths = _widths(columns, cells, room)
    if widths is None:
        return "\n".join(out + blocks(columns, cells, room))
    out.extend(_row([c.header for c in columns], columns, widths, header=True))
    out.append(GAP.join("-" * w for w in widths))
    for row in cells:
        out.extend(_row(row, columns, widths))
    return "\n".join(out)


def _row(values: Sequence[str], columns: Sequence[Column], widths: Sequence[int], header: bool = False) -> list[str]:
    parts = [
        wrap(v, w) if (c.wrap or header) and len(v) > w else [v]
        for v, c, w in zip(values, columns, widths, strict=True)
    ]
    lines = []
    for n in range(max(len(p) for p in parts)):
        line = [
            (p[n] if n < len(p) else "").rjust(w) if c.right else (p[n] if n < len(p) else "").ljust(w)
            for p, c, w in zip(parts, columns, widths, strict=True)
        ]
        lines.append(GAP.join(line).rstrip())
    return lines


def blocks(columns: Sequence[Column], rows: Sequence[Sequence[str]], room: int) -> list[str]:
    """Each row as ``header: value`` lines (the first unindented), a blank line between rows."""
    out: list[str] = []
    for n, row in enumerate(rows):
        if n:
            out.append("")
        for i, (c, v) in enumerate(zip(columns, row, strict=True)):
            out.extend(pair(c.header, v, room, indent="" if i == 0 else "  "))
    return out


def pair(label: str, value: str, room: int, indent: str = "") -> list[str]:
    """``label: value`` on one line if it fits, else the label and the value wrapped under it."""
    line = f"{indent}{label}: {value}"
    if len(line) <= room:
        return [line]
    return [*wrap(f"{label}:", room, indent), *wrap(value, room, indent + "  ")]


def echo(text: str) -> None:
    """Print a report (a trailing newline added)."""
    typer.echo(text)


def echo_json(data: Any) -> None:
    """Print ``data`` as JSON, and nothing else (decimals and dates as strings)."""
    typer.echo(json.dumps(data, indent=2, default=str))


def service_unreachable(service: str, url: str, error: Exception) -> typer.Exit:
    """Say on stderr, in one line, that ``service`` at ``url`` did not answer and where its address
    comes from; returns the exit (1) for the caller to raise (found by a new user: a traceback, or
    the default port used with the stack on another)."""
    typer.echo(
        f"the {service} service at {url} did not answer ({type(error).__name__}: {error}); is it running? "
        f"Its address: --url, {service.upper()}_URL, or {service.upper()}_HTTP_PORT for a local stack on another port",
        err=True,
    )
    return typer.Exit(1)
