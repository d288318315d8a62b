"""``deploy/test.sh``, the README's second command, leaves the machine as it found it: it stops
what it started - Keycloak, Kafka, PostgreSQL - however it ends, and leaves what was already
running (the demo's). The real scripts are tried elsewhere (``test_deploy_scripts.py``, CI); here
the script runs with stand-ins for the parts it starts and for pytest, each recording what it was
asked, so that every way it can end is tried in a second."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PARTS = ("keycloak", "kafka", "postgres")

# A part's stand-in: `status` answers from a marker file; `start` and `stop` record themselves.
PART = """#!/usr/bin/env bash
name=$(basename "$0" .sh)
case "$1" in
  status) [ -f "$STATE/$name" ] ;;
  start) echo "start $name" >> "$STATE/calls"
         [ "${FAIL_START:-}" != "$name" ] || { echo "$name could not start" >&2; exit 1; }
         touch "$STATE/$name" ;;
  stop) echo "stop $name" >> "$STATE/calls"; rm -f "$STATE/$name" ;;
esac
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A copy of test.sh and lib.sh beside stand-ins for setup.sh, the three parts and ``uv``."""
    deploy = tmp_path / "repo" / "deploy"
    deploy.mkdir(parents=True)
    for name in ("test.sh", "lib.sh"):
        shutil.copy2(ROOT / "deploy" / name, deploy / name)
    (deploy / "setup.sh").write_text("#!/usr/bin/env bash\nexit 0\n")
    for part in PARTS:
        (deploy / f"{part}.sh").write_text(PART)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "uv").write_text('#!/usr/bin/env bash\necho "pytest" >> "$STATE/calls"\nexit "${PYTEST_RC:-0}"\n')
    (bin_dir / "uv").chmod(0o755)
    (tmp_path / "state").mkdir()
    return tmp_path


def run_test_sh(folder: Path, *, running: tuple[str, ...] = (), **env: str) -> tuple[int, list[str], str]:
    state = folder / "state"
    for part in running:
        (state / part).touch()
    keep = {k: v for k, v in os.environ.items() if k in ("HOME", "LANG", "TMPDIR")}
    done = subprocess.run(
        ["bash", str(folder / "repo" / "deploy" / "test.sh")],
        env=keep
        | {"PATH": f"{folder / 'bin'}:/usr/bin:/bin", "STATE": str(state), "HOMECARE_RUN_DIR": str(folder / "run")}
        | env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    calls = (state / "calls").read_text().split("\n") if (state / "calls").exists() else []
    return done.returncode, [c for c in calls if c], done.stderr


def stopped(calls: list[str]) -> set[str]:
    return {c.split()[1] for c in calls if c.startswith("stop ")}


def test_it_stops_what_it_started_and_passes_on_pytests_answer(folder):
    rc, calls, stderr = run_test_sh(folder, PYTEST_RC="1")
    assert rc == 1  # a failed test run stays a failure
    assert "what to do" not in stderr  # pytest says why; not the deploy scripts' failure report
    assert "pytest" in calls
    assert stopped(calls) == set(PARTS)
    assert calls.index("pytest") < min(calls.index(f"stop {p}") for p in PARTS)


def test_what_was_already_running_is_left_running(folder):
    rc, calls, _ = run_test_sh(folder, running=("kafka", "keycloak"))
    assert rc == 0
    assert stopped(calls) == {"postgres"}
    assert (folder / "state" / "kafka").exists() and (folder / "state" / "keycloak").exists()


def test_keep_running_keeps_what_it_started_and_says_so(folder):
    rc, calls, stderr = run_test_sh(folder, HOMECARE_KEEP_RUNNING="1")
    assert rc == 0
    assert stopped(calls) == set()
    assert "left running (HOMECARE_KEEP_RUNNING=1): keycloak kafka postgres" in stderr


def test_no_tests_collected_is_a_failure_and_still_stops(folder):
    rc, calls, stderr = run_test_sh(folder, PYTEST_RC="5")
    assert rc == 1
    assert "no tests were collected" in stderr
    assert stopped(calls) == set(PARTS)


def test_a_failed_start_stops_those_already_started(folder):
    rc, calls, stderr = run_test_sh(folder, FAIL_START="postgres")
    assert rc != 0
    assert "postgres could not start" in stderr
    assert "pytest" not in calls
    assert {"kafka", "keycloak"} <= stopped(calls)
