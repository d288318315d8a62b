"""The deploy scripts from a clone in a folder only its owner may enter (issue 14, item 9): as
root, a clone under /root (mode 700) must still get its PostgreSQL, although initdb and the server
run as the 'postgres' user; and every failure of a deploy script prints what failed, the last
lines of the failing component's log and what to do (docs/guide/troubleshooting.md)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import asyncpg
import pytest

from services.bench.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
# Variables that would point the scripts at the shared installation instead of the clone's own.
OURS = ("HOMECARE_RUN_DIR", "DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "HOMECARE_KAFKA_PORT", "HOMECARE_PG_PORT")


@pytest.fixture(scope="module")
def private_clone():
    """``git clone`` of this repository into a fresh mode-700 folder in the user's home, with the
    working tree's files laid over it (so what is tested is what is on disk, committed or not)."""
    home = Path(tempfile.mkdtemp(prefix="homecare-clone-", dir=Path.home()))
    assert oct(home.stat().st_mode & 0o777) == "0o700"
    clone = home / "homecare"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout
    for name in filter(None, files.decode().split("\0")):
        if (ROOT / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, clone / name)
    yield clone
    shutil.rmtree(home, ignore_errors=True)


def run(clone: Path, script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in OURS}
    # The jars: the running checkout's cache, so the clone does not download them again.
    base["HOMECARE_CACHE_DIR"] = os.environ.get("HOMECARE_CACHE_DIR", str(ROOT / ".cache"))
    return subprocess.run(
        ["bash", f"deploy/{script}", *args],
        cwd=clone,
        env=base | env,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.fixture(scope="module")
def pg_port(private_clone):
    port = str(free_port())
    yield port
    run(private_clone, "postgres.sh", "reset", HOMECARE_PG_PORT=port)  # the cluster may live outside the clone


async def test_postgres_starts_from_a_clone_the_postgres_user_cannot_enter(private_clone, pg_port):
    if os.geteuid() == 0:  # the case of the issue: the server's user cannot reach the clone
        denied = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(private_clone)])
        assert denied.returncode != 0, "the postgres user can enter the clone: the test proves nothing"
    started = run(private_clone, "postgres.sh", "start", HOMECARE_PG_PORT=pg_port)
    assert started.returncode == 0, started.stderr
    conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{pg_port}/postgres")
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()
    assert run(private_clone, "postgres.sh", "status", HOMECARE_PG_PORT=pg_port).returncode == 0
    # Its log is found where the scripts say, whoever owns the file.
    assert "database system is ready" in (private_clone / ".run/logs/postgres.log").read_text()
    assert run(private_clone, "postgres.sh", "stop", HOMECARE_PG_PORT=pg_port).returncode == 0
    assert run(private_clone, "postgres.sh", "status", HOMECARE_PG_PORT=pg_port).returncode != 0


def test_a_postgres_that_cannot_start_says_why_with_its_log(private_clone, pg_port):
    first = run(private_clone, "postgres.sh", "start", HOMECARE_PG_PORT=pg_port)
    assert first.returncode == 0, first.stderr
    run(private_clone, "postgres.sh", "stop", HOMECARE_PG_PORT=pg_port)
    home = (private_clone / ".run/postgres/location").read_text().strip()
    conf = Path(home) / "data" / "postgresql.conf"
    original = conf.read_text()
    conf.write_text(original + "\nthis_is_not_a_setting = 1\n")
    try:
        failed = run(private_clone, "postgres.sh", "start", HOMECARE_PG_PORT=pg_port)
    finally:
        conf.write_text(original)
    assert failed.returncode != 0
    assert "FAILED (PostgreSQL): PostgreSQL did not start" in failed.stderr
    assert "last lines of" in failed.stderr
    assert 'unrecognized configuration parameter "this_is_not_a_setting"' in failed.stderr  # from the log
    assert "what to do:" in failed.stderr


def test_kafka_on_a_port_that_is_taken_names_the_port_and_what_to_do(private_clone):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        failed = run(
            private_clone,
            "kafka.sh",
            "start",
            HOMECARE_KAFKA_PORT=port,
            HOMECARE_KAFKA_CONTROLLER_PORT=str(free_port()),
        )
    assert failed.returncode == 1
    assert f"FAILED (Kafka): port {port} is taken by another process" in failed.stderr
    assert "what to do:" in failed.stderr and "HOMECARE_KAFKA_PORT" in failed.stderr


def test_an_unexpected_failure_shows_the_step_the_log_tail_and_what_to_do(private_clone):
    """No check of the script's own catches this one (a heap size Java refuses): the ERR trap in
    deploy/lib.sh reports the failed step and the tail of Kafka's log, where Java said why."""
    failed = run(
        private_clone,
        "kafka.sh",
        "start",
        HOMECARE_KAFKA_PORT=str(free_port()),
        HOMECARE_KAFKA_CONTROLLER_PORT=str(free_port()),
        KAFKA_HEAP="lots",
    )
    assert failed.returncode != 0
    assert "FAILED (Kafka)" in failed.stderr
    assert "Invalid maximum heap size" in failed.stderr  # the log's last lines
    assert "what to do:" in failed.stderr
    assert not (private_clone / ".run/kafka/kafka.pid").exists()
