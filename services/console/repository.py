"""The console's SQL (asyncpg), schema ``console``: staff accounts, sessions, sign-in attempts."""

from __future__ import annotations

import datetime as dt

import asyncpg

from services.runtime.db import Connection


async def add_staff(
    conn: Connection, *, username: str, display_name: str, role: str, password_hash: str, created_by: str | None
) -> bool:
    """False when the username is taken."""
    done = await conn.fetchval(
        """INSERT INTO staff (username, display_name, role, password_hash, created_by) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (username) DO NOTHING RETURNING true""",
        username,
        display_name,
        role,
        password_hash,
        created_by,
    )
    return bool(done)


async def get_staff(conn: Connection, username: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM staff WHERE username = $1", username)


async def list_staff(conn: Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT username, display_name, role, active, created_at, created_by, last_signed_in_at "
        "FROM staff ORDER BY username"
    )


async def set_password_hash(conn: Connection, username: str, password_hash: str) -> None:
    await conn.execute("UPDATE staff SET password_hash = $2 WHERE username = $1", username, password_hash)


async def set_active(conn: Connection, username: str, active: bool) -> bool:
    done = await conn.fetchval("UPDATE staff SET active = $2 WHERE username = $1 RETURNING true", username, active)
    if not active:
        await conn.execute("DELETE FROM sessions WHERE username = $1", username)
    return bool(done)


async def record_attempt(conn: Connection, *, kind: str, who: str, succeeded: bool) -> None:
    await conn.execute("INSERT INTO sign_in_attempts (kind, who, succeeded) VALUES ($1, $2, $3)", kind, who, succeeded)
    if succeeded and kind == "staff":
        await conn.execute("UPDATE staff SET last_signed_in_at = now() WHERE username = $1", who)


async def recent_failures(conn: Connection, *, kind: str, who: str, since: dt.datetime) -> int:
    """Failures since the later of ``since`` and the last success."""
    return int(
        await conn.fetchval(
            """SELECT count(*) FROM sign_in_attempts
            WHERE kind = $1 AND who = $2 AND NOT succeeded AND at >= $3
              AND at > coalesce((SELECT max(at) FROM sign_in_attempts WHERE kind = $1 AND who = $2 AND succeeded),
                  '-infinity')""",
            kind,
            who,
            since,
        )
    )


async def add_session(
    conn: Connection,
    *,
    token_hash: bytes,
    kind: str,
    csrf_token: str,
    expires_at: dt.datetime,
    username: str | None = None,
    provider_id: str | None = None,
    provider_credential: str | None = None,
) -> None:
    await conn.execute(
        """INSERT INTO sessions (token_hash, kind, username, provider_id, provider_credential, csrf_token, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        token_hash,
        kind,
        username,
        provider_id,
        provider_credential,
        csrf_token,
        expires_at,
    )


async def live_session(conn: Connection, token_hash: bytes) -> asyncpg.Record | None:
    """The session if it has not expired (and its staff member is still active)."""
    return await conn.fetchrow(
        """SELECT s.*, st.role, st.display_name FROM sessions s LEFT JOIN staff st USING (username)
            WHERE s.token_hash = $1 AND s.expires_at > now() AND (s.kind = 'provider' OR st.active)""",
        token_hash,
    )


async def extend_session(conn: Connection, token_hash: bytes, expires_at: dt.datetime) -> None:
    await conn.execute(
        "UPDATE sessions SET last_seen_at = now(), expires_at = $2 WHERE token_hash = $1", token_hash, expires_at
    )


async def delete_session(conn: Connection, token_hash: bytes) -> None:
    await conn.execute("DELETE FROM sessions WHERE token_hash = $1", token_hash)


async def purge_expired(conn: Connection) -> int:
    done = await conn.execute("DELETE FROM sessions WHERE expires_at <= now()")
    await conn.execute("DELETE FROM sign_in_attempts WHERE at < now() - interval '90 days'")
    return int(done.split()[-1])
