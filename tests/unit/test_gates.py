"""The code's gates as tests: a lint finding, an unformatted file or a type error fails the suite,
not only deploy/check.sh and the pre-commit hook (docs/guide/contributing.md).

The tools run from this environment (the versions uv.lock pins) on the whole repository, with the
configuration in pyproject.toml. mypy keeps its incremental cache in .mypy_cache/, so after a first
run only what changed is checked again.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

GATES = {
    "ruff check": ["ruff", "check", "--no-fix", "."],
    "ruff format": ["ruff", "format", "--check", "."],
    "mypy": ["mypy"],
}


@pytest.mark.parametrize("gate", list(GATES))
def test_the_gate_finds_nothing(gate: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", *GATES[gate]], cwd=ROOT, capture_output=True, text=True, timeout=540, check=False
    )
    assert done.returncode == 0, f"{gate} failed; fix it, or run bash deploy/check.sh:\n{done.stdout}{done.stderr}"
