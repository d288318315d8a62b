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


HANDLERS = """
from schemas.events import OfferMade, PackagePlaced, PackageUnplaced
from services.runtime.consumer import EventConsumer
from services.runtime.outbox import UnitOfWork


async def on_placed(uow: UnitOfWork, event: PackagePlaced) -> None: ...
async def on_outcome(uow: UnitOfWork, event: PackagePlaced | PackageUnplaced) -> None: ...
async def on_offer(uow: UnitOfWork, event: OfferMade) -> None: ...


def wire(consumer: EventConsumer) -> None:
    consumer.on(PackagePlaced)(on_placed)
    consumer.on(PackagePlaced, PackageUnplaced)(on_outcome)
    consumer.on(PackagePlaced)(on_offer)  # wrong: another event class
    consumer.on(PackagePlaced, PackageUnplaced)(on_placed)  # wrong: it does not take PackageUnplaced
"""


def test_mypy_accepts_a_handler_of_the_events_it_is_registered_for_and_refuses_any_other(tmp_path: Path) -> None:
    """``EventConsumer.on`` is typed so that a handler must take exactly the events it is
    registered for (it was typed to take any Envelope, so no real handler fitted it)."""
    wiring = tmp_path / "wiring.py"
    wiring.write_text(HANDLERS)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), str(wiring)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    wrong = [str(number) for number, line in enumerate(HANDLERS.splitlines(), start=1) if "# wrong" in line]
    assert [line.split(":")[1] for line in errors] == wrong, done.stdout
    assert all("[arg-type]" in line for line in errors), done.stdout
