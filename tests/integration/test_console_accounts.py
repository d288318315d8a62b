"""The console's staff accounts and sessions on the real PostgreSQL (schema ``console``, its own role)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from services.console import domain, handlers
from services.runtime.db import create_pool, migrate
from services.runtime.settings import load

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "console" / "migrations"
POLICY = domain.SessionPolicy()


@pytest.fixture
async def pool(database_url):
    p = await create_pool(load("console").service_dsn, schema="console", application="test-console", size=3)
    await migrate(p, "console", MIGRATIONS)
    yield p
    await p.close()


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def test_passwords_are_stored_as_argon2id_hashes_and_sessions_as_token_hashes(pool):
    await handlers.add_staff(
        pool,
        username="Hash.Test",
        display_name="Hash Test",
        role="broker",
        password="a long enough password",
        created_by="test",
    )
    stored = await pool.fetchval("SELECT password_hash FROM staff WHERE username = 'hash.test'")
    assert stored.startswith("$argon2id$") and "a long enough password" not in stored
    token = await handlers.sign_in(pool, POLICY, username="hash.test", password="a long enough password", now=now())
    rows = await pool.fetch("SELECT token_hash, csrf_token FROM sessions WHERE username = 'hash.test'")
    assert (
        len(rows) == 1
        and rows[0]["token_hash"] == handlers.token_hash(token)
        and token.encode() != rows[0]["token_hash"]
    )
    session = await handlers.current_session(pool, POLICY, token, now=now())
    assert session is not None
    assert session.role == "broker" and session.csrf_token == rows[0]["csrf_token"]
    with pytest.raises(handlers.StaffExists):
        await handlers.add_staff(
            pool,
            username="hash.test",
            display_name="Again",
            role="ops",
            password="a long enough password",
            created_by="test",
        )


async def test_an_expired_session_signs_no_one_in_and_signing_out_ends_one(pool):
    await handlers.add_staff(
        pool, username="expiry", display_name="Expiry", role="ops", password="a long enough password", created_by="test"
    )
    token = await handlers.sign_in(pool, POLICY, username="expiry", password="a long enough password", now=now())
    assert await handlers.current_session(pool, POLICY, token, now=now()) is not None
    await pool.execute("UPDATE sessions SET expires_at = now() - interval '1 second' WHERE username = 'expiry'")
    assert await handlers.current_session(pool, POLICY, token, now=now()) is None
    token = await handlers.sign_in(pool, POLICY, username="expiry", password="a long enough password", now=now())
    session = await handlers.current_session(pool, POLICY, token, now=now())
    assert session is not None
    await handlers.sign_out(pool, session)
    assert await handlers.current_session(pool, POLICY, token, now=now()) is None
    assert await handlers.current_session(pool, POLICY, "made-up", now=now()) is None


async def test_a_deactivated_account_loses_its_sessions_and_cannot_sign_in(pool):
    await handlers.add_staff(
        pool,
        username="leaver",
        display_name="Leaver",
        role="broker",
        password="a long enough password",
        created_by="test",
    )
    token = await handlers.sign_in(pool, POLICY, username="leaver", password="a long enough password", now=now())
    await handlers.set_active(pool, "leaver", False)
    assert await handlers.current_session(pool, POLICY, token, now=now()) is None
    with pytest.raises(handlers.Refused, match="not right"):
        await handlers.sign_in(pool, POLICY, username="leaver", password="a long enough password", now=now())


async def test_guessing_is_throttled_even_for_the_right_password_and_unknown_names_answer_alike(pool):
    await handlers.add_staff(
        pool,
        username="target",
        display_name="Target",
        role="admin",
        password="a long enough password",
        created_by="test",
    )
    with pytest.raises(handlers.Refused) as unknown:
        await handlers.sign_in(pool, POLICY, username="nobody-here", password="whatever", now=now())
    for _ in range(domain.MAX_FAILED_SIGN_INS):
        with pytest.raises(handlers.Refused) as wrong:
            await handlers.sign_in(pool, POLICY, username="target", password="guess", now=now())
    assert wrong.value.message == unknown.value.message  # no telling which names exist
    with pytest.raises(handlers.Refused, match="Too many failed sign-in attempts"):
        await handlers.sign_in(pool, POLICY, username="target", password="a long enough password", now=now())
