"""PostgreSQL: pools that wait for the server, provisioning of roles and schemas, migrations.

One database, one schema and one login role per service. The role owns its schema and has no
privileges on the others (FTGO's user-per-service, done with roles). Migrations are plain
versioned SQL files applied by the service's own role inside its own schema.

Migrations are applied by the small runner below rather than Alembic or yoyo: both need a
synchronous driver beside asyncpg, and what is needed here - ordered files, a version table,
one transaction per file, an advisory lock so two processes can start at once - is 30 lines.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from services.runtime.logging import get_logger
from services.runtime.settings import SCHEMA_OWNERS, is_local_cluster, remember_local_password, role_password

log = get_logger(__name__)

T = TypeVar("T")

# What asyncpg hands out: a connection of its own, or a pool's proxy for one (the same methods).
Connection = asyncpg.Connection | PoolConnectionProxy

RUNTIME_MIGRATIONS = Path(__file__).parent / "migrations"
# Objects provisioning makes as their owners, before any service migrates (the audit log).
PROVISIONING = Path(__file__).parent / "provisioning"
AUDIT_ROLE = "homecare_audit"

# Connection-level failures worth waiting out: the server is down, restarting or full.
TRANSIENT_DB_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    ConnectionError,
    asyncio.TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
)


def is_transient(exc: BaseException) -> bool:
    """Worth waiting out. asyncpg's client-side DataError (bad arguments: a bug) subclasses
    InterfaceError (which otherwise means a closed connection), so it is singled out."""
    return isinstance(exc, TRANSIENT_DB_ERRORS) and not isinstance(exc, asyncpg.exceptions._base.DataError)


def backoff_delays(initial: float = 0.2, maximum: float = 10.0) -> Iterator[float]:
    """Full-jitter exponential backoff: never a tight loop, never a thundering herd."""
    attempt = 0
    while True:
        yield random.uniform(0, min(maximum, initial * 2**attempt))
        attempt += 1


async def wait_for(what: str, connect: Callable[[], Awaitable[T]], *, timeout: float | None = None) -> T:
    """Call ``connect()`` until it succeeds, logging each failed attempt with its backoff."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    for attempt, delay in enumerate(backoff_delays(0.2, 5.0), start=1):
        try:
            return await connect()
        except TRANSIENT_DB_ERRORS as exc:
            if deadline is not None and loop.time() + delay > deadline:
                raise
            log.warning(
                "waiting for dependency", dependency=what, attempt=attempt, retry_in=round(delay, 2), error=str(exc)
            )
            await asyncio.sleep(delay)
    raise AssertionError("backoff_delays() never ends")


async def fetch_one(conn: Connection | asyncpg.Pool, query: str, *args: object) -> asyncpg.Record:
    """The row a statement always returns (an INSERT or UPDATE ... RETURNING of a row known to be
    there); LookupError when it returns none."""
    row = await conn.fetchrow(query, *args)
    if row is None:
        raise LookupError("the statement returned no row")
    return row


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: a key of UnitOfWork's rows
class RowsInsert:
    """An INSERT of any number of rows in one statement: one array parameter a column, unnested in
    the rows' order (``WITH ORDINALITY ... ORDER BY``, so a serial column numbers them as given).

    ``columns``: ``(name, element type)`` pairs, e.g. ``("payload", "text")``; ``values``: the
    expression inserted into each column, over the unnested row ``t`` (default ``t.<name>``; e.g.
    ``"t.payload::jsonb"``, ``"coalesce(t.at, now())"``; a name not among ``columns`` is a further
    column computed from the others); ``suffix``: what follows the SELECT (an
    ``ON CONFLICT`` clause). A column whose own type is an array cannot be unnested: pass it as
    JSON text and build the array in ``values``.

    Why: ``executemany`` sends one Bind/Execute a row, and PostgreSQL sets up and runs the statement
    (and its statement-level triggers) once a row; under load those rows were a tenth of the
    statements the services ran. One statement does each once (decision 0141)."""

    table: str
    columns: tuple[tuple[str, str], ...]
    values: dict[str, str] = field(default_factory=dict)
    suffix: str = ""

    @property
    def statement(self) -> str:
        return _statement((self,))

    @property
    def names(self) -> list[str]:
        """The columns' names, in the order a row gives their values."""
        return [name for name, _ in self.columns]

    def numbered_from(self, first: int) -> str:
        """The statement, its array parameters numbered from ``$first``."""
        names = self.names
        targets = names + [name for name in self.values if name not in names]
        arrays = ", ".join(f"${i}::{kind}[]" for i, (_, kind) in enumerate(self.columns, first))
        select = ", ".join(self.values.get(name, f"t.{name}") for name in targets)
        return (
            f"INSERT INTO {self.table} ({', '.join(targets)}) SELECT {select}"
            f" FROM unnest({arrays}) WITH ORDINALITY AS t({', '.join(names)}, row_number)"
            f" ORDER BY t.row_number {self.suffix}"
        ).rstrip()

    def arrays(self, rows: Sequence[Sequence[object]]) -> list[list[object]]:
        """``rows`` (each a value per column, in ``columns``' order) as the statement's arguments: one
        array a column."""
        return [list(column) for column in zip(*rows, strict=True)]

    async def execute(self, conn: Connection, rows: Sequence[Sequence[object]]) -> None:
        """Insert ``rows`` (each a value per column, in ``columns``' order) in one statement."""
        await insert_rows(conn, [(self, rows)])


async def insert_rows(conn: Connection, inserts: Sequence[tuple[RowsInsert, Sequence[Sequence[object]]]]) -> None:
    """Several :class:`RowsInsert` with their rows, in one statement and one round trip: each but
    the last a data-modifying ``WITH`` query of the last. For different tables only (the queries of
    one statement run in no set order; each table's rows keep theirs)."""
    # In the tables' order, not the order deferred: one statement text for one set of tables.
    inserts = sorted(((insert, rows) for insert, rows in inserts if rows), key=lambda pair: pair[0].table)
    if not inserts:
        return
    args = [array for insert, rows in inserts for array in insert.arrays(rows)]
    await conn.execute(_statement(tuple(insert for insert, _ in inserts)), *args)


@cache  # a few sets of tables a service: the text is made once, not at every unit of work's end
def _statement(inserts: tuple[RowsInsert, ...]) -> str:
    parts, first = [], 1
    for insert in inserts:
        parts.append(insert.numbered_from(first))
        first += len(insert.columns)
    *withs, last = parts
    return last if not withs else "WITH " + ", ".join(f"w{i} AS ({q})" for i, q in enumerate(withs)) + " " + last


async def _keep_session(conn: Connection) -> None:
    """A connection goes back to the pool as it is (asyncpg still rolls back an open transaction)."""


async def create_pool(
    dsn: str, *, schema: str, application: str, size: int = 10, timeout: float | None = None
) -> asyncpg.Pool:
    async def connect() -> asyncpg.Pool:
        return await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=size,
            command_timeout=30,
            server_settings={"search_path": schema, "application_name": application},
            # asyncpg's default reset (advisory unlock all, CLOSE ALL, UNLISTEN, RESET ALL) is one
            # more round trip on every release - a tenth of a consumed event's statements, the
            # benchmark's profile showed. Nothing here leaves session state behind: advisory locks
            # are per transaction (the migration lock is released explicitly), no LISTEN, no SET.
            reset=_keep_session,
        )

    return await wait_for("postgresql", connect, timeout=timeout)


async def connect(dsn: str, *, schema: str, application: str) -> asyncpg.Connection:
    """One connection outside the pools, for a session of its own (the relay's LISTEN): the
    pools' connections keep no session state (see ``create_pool``)."""
    return await asyncpg.connect(dsn, server_settings={"search_path": schema, "application_name": application})


def _with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))


async def provision(admin_dsn: str, *, timeout: float | None = 120) -> None:
    """Create the database, a login role and a schema per service. Safe to run again.

    Each role owns its own schema; nothing is granted on the others, and PUBLIC keeps no
    rights on the database's public schema, so a service cannot read another's tables.
    """
    database = urlsplit(admin_dsn).path.lstrip("/") or "homecare"
    admin = await wait_for(
        "postgresql", lambda: asyncpg.connect(_with_database(admin_dsn, "postgres")), timeout=timeout
    )
    try:
        await admin.execute("SELECT pg_advisory_lock(hashtext('homecare-provision'))")
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            await admin.execute(f'CREATE DATABASE "{database}"')
        if not await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", AUDIT_ROLE):
            await admin.execute(f"CREATE ROLE {AUDIT_ROLE} NOLOGIN")  # owns the audit log; nobody logs in as it
        # Passwords are stored as SCRAM-SHA-256 verifiers, never in clear or as MD5.
        await admin.execute("SET password_encryption = 'scram-sha-256'")
        for role in SCHEMA_OWNERS:
            if not await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
                await admin.execute(f"CREATE ROLE {role} LOGIN")
            # The role's password from <ROLE>_DB_PASSWORD (or the local cluster's generated one);
            # without one the role has none, and can log in only where the server trusts it.
            password = role_password(role, admin_dsn)
            if password is None and is_local_cluster(admin_dsn):
                password = remember_local_password(role)  # under the provisioning lock: made once
            if password:
                statement = await admin.fetchval(
                    "SELECT format('ALTER ROLE %I PASSWORD %L', $1::text, $2::text)", role, password
                )
                await admin.execute(statement)
        await admin.execute("SELECT pg_advisory_unlock(hashtext('homecare-provision'))")
    finally:
        await admin.close()

    conn = await asyncpg.connect(admin_dsn)
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('homecare-provision-schemas'))")
            await conn.execute(f'REVOKE ALL ON DATABASE "{database}" FROM PUBLIC')
            await conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
            for role in SCHEMA_OWNERS:
                await conn.execute(f'GRANT CONNECT, TEMPORARY ON DATABASE "{database}" TO {role}')
                await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {role} AUTHORIZATION {role}")
            # The audit log, owned by its own role (the services may only add to it and read it).
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS audit AUTHORIZATION {AUDIT_ROLE}")
            await conn.execute(f"SET LOCAL ROLE {AUDIT_ROLE}")
            await conn.execute((PROVISIONING / "audit.sql").read_text())
            await conn.execute("RESET ROLE")
        # Statement statistics for operations, where the server has the module loaded (the local
        # cluster of deploy/postgres.sh does); a server without it is fine too.
        if await conn.fetchval(
            "SELECT 'pg_stat_statements' = ANY(regexp_split_to_array(current_setting('shared_preload_libraries'), "
            "'\\s*,\\s*'))"
        ):
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    finally:
        await conn.close()
    log.info("database provisioned", database=database, roles=list(SCHEMA_OWNERS))


def migration_files(*folders: Path) -> list[tuple[str, Path]]:
    """(version, file) in apply order: the runtime's tables first, then the service's own."""
    found = []
    for folder in folders:
        prefix = "runtime-" if folder == RUNTIME_MIGRATIONS else ""
        found += [(prefix + f.stem, f) for f in sorted(folder.glob("*.sql"))]
    return found


async def migrate(pool: asyncpg.Pool, schema: str, folder: Path) -> list[str]:
    """Apply the pending migrations; returns the versions applied now. Safe twice and concurrently."""
    applied_now = []
    async with pool.acquire() as conn:
        # One lock per schema: a second process starting at the same moment waits here,
        # then finds everything applied.
        await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"migrate:{schema}")
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, applied_at timestamptz NOT "
                "NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for version, path in migration_files(RUNTIME_MIGRATIONS, folder):
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text())
                    await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
                applied_now.append(version)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", f"migrate:{schema}")
    if applied_now:
        log.info("migrations applied", schema=schema, versions=applied_now)
    return applied_now
