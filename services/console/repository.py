"""The console's SQL (asyncpg), schema ``console``: staff accounts, sessions, sign-in attempts, and
sign-ins on their way through the identity provider."""

from __future__ import annotations

import datetime as dt

import asyncpg

from services.console import domain
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
    if not active:  # the account's sessions, not those of someone of that name signed in through the IdP
        await conn.execute("DELETE FROM sessions WHERE username = $1 AND idp_subject IS NULL", username)
    return bool(done)


async def lock_attempts(conn: Connection, *, kind: str, who: str, address: str) -> None:
    """Serialise the throttling decision for this address and this account (address first, always)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"sign-in-address:{address}")
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"sign-in:{kind}:{who}")


async def attempt_counts(
    conn: Connection, *, kind: str, who: str, address: str, since: dt.datetime
) -> domain.SignInCounts:
    """Failed and in-flight (succeeded IS NULL) attempts since ``since``, three ways."""
    row = await conn.fetchrow(
        """WITH recent AS (SELECT * FROM sign_in_attempts WHERE at >= $4 AND succeeded IS NOT TRUE),
                last_pair AS (SELECT coalesce(max(at), '-infinity') AS at FROM sign_in_attempts
                               WHERE kind = $1 AND who = $2 AND address = $3 AND succeeded),
                last_account AS (SELECT coalesce(max(at), '-infinity') AS at FROM sign_in_attempts
                                  WHERE kind = $1 AND who = $2 AND succeeded)
           SELECT (SELECT count(*) FROM recent, last_pair
                    WHERE kind = $1 AND who = $2 AND address = $3 AND recent.at > last_pair.at) AS pair,
                  (SELECT count(*) FROM recent WHERE address = $3) AS address,
                  (SELECT count(*) FROM recent, last_account
                    WHERE kind = $1 AND who = $2 AND recent.at > last_account.at) AS account""",
        kind,
        who,
        address,
        since,
    )
    assert row is not None  # an aggregate query always returns its one row
    return domain.SignInCounts(pair=row["pair"], address=row["address"], account=row["account"])


async def begin_attempt(conn: Connection, *, kind: str, who: str, address: str) -> int:
    """An attempt being checked now (counted against the limits until it is settled)."""
    return await conn.fetchval(
        "INSERT INTO sign_in_attempts (kind, who, address, succeeded) VALUES ($1, $2, $3, NULL) RETURNING id",
        kind,
        who,
        address,
    )


async def settle_attempt(conn: Connection, attempt_id: int, *, kind: str, who: str, succeeded: bool) -> None:
    await conn.execute("UPDATE sign_in_attempts SET succeeded = $2, at = now() WHERE id = $1", attempt_id, succeeded)
    if succeeded and kind == "staff":
        await conn.execute("UPDATE staff SET last_signed_in_at = now() WHERE username = $1", who)


async def add_session(
    conn: Connection,
    *,
    token_hash: bytes,
    kind: str,
    csrf_token: str,
    expires_at: dt.datetime,
    username: str | None = None,
    provider_id: str | None = None,
    provider_credential_sealed: str | None = None,
    idp_subject: str | None = None,
    idp_display_name: str | None = None,
    idp_role: str | None = None,
    id_token_sealed: str | None = None,
    refresh_token_sealed: str | None = None,
) -> None:
    await conn.execute(
        """INSERT INTO sessions (token_hash, kind, username, provider_id, provider_credential_sealed, csrf_token,
                                 expires_at, idp_subject, idp_display_name, idp_role, id_token_sealed,
                                 refresh_token_sealed, idp_checked_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,
                   CASE WHEN $12::text IS NULL THEN NULL ELSE now() END)""",
        token_hash,
        kind,
        username,
        provider_id,
        provider_credential_sealed,
        csrf_token,
        expires_at,
        idp_subject,
        idp_display_name,
        idp_role,
        id_token_sealed,
        refresh_token_sealed,
    )


async def live_session(conn: Connection, token_hash: bytes, *, local_accounts: bool) -> asyncpg.Record | None:
    """The session if it has not expired: a provider's; a staff member's signed in through the
    identity provider (name and role as its ID token said); or, while local accounts are enabled,
    one of a still-active console account (name and role as the account says now)."""
    return await conn.fetchrow(
        """SELECT s.token_hash, s.kind, s.csrf_token, s.created_at, s.username, s.provider_id,
                  s.provider_credential_sealed, s.idp_subject, s.id_token_sealed, s.refresh_token_sealed,
                  s.idp_checked_at, s.idp_role,
                  CASE WHEN s.idp_subject IS NULL THEN st.role ELSE s.idp_role END AS role,
                  CASE WHEN s.idp_subject IS NULL THEN st.display_name ELSE s.idp_display_name END AS display_name
             FROM sessions s LEFT JOIN staff st ON st.username = s.username AND s.idp_subject IS NULL
            WHERE s.token_hash = $1 AND s.expires_at > now()
              AND (s.kind = 'provider' OR s.idp_subject IS NOT NULL OR ($2 AND st.active))""",
        token_hash,
        local_accounts,
    )


async def extend_session(conn: Connection, token_hash: bytes, expires_at: dt.datetime) -> None:
    await conn.execute(
        "UPDATE sessions SET last_seen_at = now(), expires_at = $2 WHERE token_hash = $1", token_hash, expires_at
    )


async def rechecked_session(
    conn: Connection, token_hash: bytes, *, id_token_sealed: str, refresh_token_sealed: str
) -> None:
    """The identity provider agreed again: its new tokens (a refresh token may be rotated) and when."""
    await conn.execute(
        """UPDATE sessions SET id_token_sealed = $2, refresh_token_sealed = $3, idp_checked_at = now()
            WHERE token_hash = $1""",
        token_hash,
        id_token_sealed,
        refresh_token_sealed,
    )


async def delete_session(conn: Connection, token_hash: bytes) -> None:
    await conn.execute("DELETE FROM sessions WHERE token_hash = $1", token_hash)


async def purge_expired(conn: Connection) -> int:
    done = await conn.execute("DELETE FROM sessions WHERE expires_at <= now()")
    await conn.execute("DELETE FROM oidc_sign_ins WHERE expires_at <= now()")
    await conn.execute("DELETE FROM sign_in_attempts WHERE at < now() - interval '90 days'")
    return int(done.split()[-1])


async def set_flash(conn: Connection, token_hash: bytes, message: str) -> None:
    """A message for the session's next page (replacing any not yet shown)."""
    await conn.execute("UPDATE sessions SET flash = $2 WHERE token_hash = $1", token_hash, message)


async def take_flash(conn: Connection, token_hash: bytes) -> str | None:
    """The session's waiting message, removed as it is read."""
    return await conn.fetchval(
        """UPDATE sessions s SET flash = NULL FROM (SELECT flash FROM sessions WHERE token_hash = $1 FOR UPDATE) old
            WHERE s.token_hash = $1 RETURNING old.flash""",
        token_hash,
    )


async def add_oidc_sign_in(
    conn: Connection,
    *,
    key_hash: bytes,
    state: str,
    nonce: str,
    code_verifier_sealed: str,
    next: str,
    expires_at: dt.datetime,
) -> None:
    await conn.execute(
        """INSERT INTO oidc_sign_ins (key_hash, state, nonce, code_verifier_sealed, next, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        key_hash,
        state,
        nonce,
        code_verifier_sealed,
        next,
        expires_at,
    )


async def take_oidc_sign_in(conn: Connection, key_hash: bytes) -> asyncpg.Record | None:
    """The sign-in begun under this key, removed as it is read (an answer is used once); None when
    unknown or expired."""
    return await conn.fetchrow(
        "DELETE FROM oidc_sign_ins WHERE key_hash = $1 RETURNING state, nonce, code_verifier_sealed, next, "
        "expires_at > now() AS live",
        key_hash,
    )
