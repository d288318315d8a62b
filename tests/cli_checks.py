"""Checks on what a ``homecare`` command prints: run in a pipe at a given width, every line fits,
every value is there whole."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def homecare_piped(*args: str, columns: int, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    """The command's stdout, run with stdout a pipe (not a terminal) and ``COLUMNS`` set."""
    run = subprocess.run(
        [sys.executable, "-m", "services.cli.main", *args],
        capture_output=True,  # pipes, not a terminal
        text=True,
        env=os.environ | (env or {}) | {"COLUMNS": str(columns)},
        cwd=ROOT,
        timeout=timeout,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


def assert_fits(text: str, room: int) -> None:
    """No line is wider than ``room``, and none wider than 80, but a word longer than ``room`` (a
    path) keeps its own line whole."""
    too_long = [line for line in text.splitlines() if len(line) > 80 or (len(line) > room and " " in line.strip())]
    assert not too_long, f"lines over {room} characters: {too_long}"


def assert_shows(text: str, value: object) -> None:
    """Every word of the value is in the text whole, in order (a wrapped cell's lines are read with
    the other columns' cells beside them, so its words need not be next to each other; a block of
    ``header: value`` lines adds a colon to a header, prose a comma or semicolon to a word)."""
    words = iter(text.split())
    missing = [
        w for w in str(value).split() if not any(t == w or (t.startswith(w) and t[len(w) :] in ":,;") for t in words)
    ]
    assert not missing, f"{value!r} is not in the output whole: {missing} missing"
