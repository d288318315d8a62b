"""The console's staff accounts and sessions on the real PostgreSQL (schema ``console``, its own role)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from services.console import domain, handlers
from services.runtime.db import create_pool, migrate
from services.runtime.settings import load

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "console" / "migrations"
POLICY = domain.SessionPolicy(local_accounts=True)


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


async def _staff(pool, username: str) -> None:
    await handlers.add_staff(
        pool, username=username, display_name=username, role="broker", password="a long enough password", created_by="t"
    )


async def test_forty_concurrent_wrong_passwords_are_evaluated_at_most_up_to_the_limit(pool, monkeypatch):
    """The throttle's decision and record are one locked transaction: concurrent guesses cannot all
    slip past the count (they did: 40 of 40 were checked against a limit of 5)."""
    import asyncio

    await _staff(pool, "concurrent")
    checked = []
    real = handlers.HASHER

    class CountingHasher:
        def verify(self, hash_, password):
            checked.append(password)
            return real.verify(hash_, password)

        def __getattr__(self, name):
            return getattr(real, name)

    monkeypatch.setattr(handlers, "HASHER", CountingHasher())
    results = await asyncio.gather(
        *(
            handlers.sign_in(
                pool, POLICY, username="concurrent", password=f"guess {i}", now=now(), address="198.51.100.7"
            )
            for i in range(40)
        ),
        return_exceptions=True,
    )
    assert all(isinstance(r, handlers.Refused) for r in results)
    assert len(checked) <= domain.MAX_FAILED_SIGN_INS
    assert sum("Too many" in str(r) for r in results) >= 40 - domain.MAX_FAILED_SIGN_INS


async def test_a_stranger_guessing_from_elsewhere_does_not_lock_the_owner_out(pool):
    await _staff(pool, "owner")
    for _ in range(domain.MAX_FAILED_SIGN_INS + 2):
        with pytest.raises(handlers.Refused):
            await handlers.sign_in(pool, POLICY, username="owner", password="guess", now=now(), address="203.0.113.9")
    with pytest.raises(handlers.Refused, match="Too many"):
        await handlers.sign_in(
            pool, POLICY, username="owner", password="a long enough password", now=now(), address="203.0.113.9"
        )
    token = await handlers.sign_in(
        pool, POLICY, username="owner", password="a long enough password", now=now(), address="192.0.2.10"
    )
    assert token


async def test_one_address_spraying_many_accounts_is_stopped(pool):
    for i in range(domain.MAX_FAILED_SIGN_INS_PER_ADDRESS):
        with pytest.raises(handlers.Refused, match="not right"):
            await handlers.sign_in(
                pool, POLICY, username=f"sprayed-{i}", password="Summer2026!", now=now(), address="198.51.100.99"
            )
    await _staff(pool, "sprayed-last")
    with pytest.raises(handlers.Refused, match="Too many"):
        await handlers.sign_in(
            pool, POLICY, username="sprayed-last", password="a long enough password", now=now(), address="198.51.100.99"
        )


async def test_a_portal_sessions_provider_credential_is_not_readable_from_the_database(pool):
    async def verify(provider_id: str, credential: str) -> bool:
        return True

    credential = "hcp_prov-x_" + "s" * 40
    token = await handlers.provider_sign_in(
        pool, POLICY, provider_id="prov-x", credential=credential, now=now(), verify=verify, address="192.0.2.20"
    )
    row = await pool.fetchrow("SELECT * FROM sessions WHERE token_hash = $1", handlers.token_hash(token))
    assert credential not in str(dict(row)) and row["provider_credential_sealed"]
    session = await handlers.current_session(pool, POLICY, token, now=now())
    assert session is not None and session.provider_credential == credential
    # Someone with the table but not the browser's cookie: another token opens nothing.
    assert await handlers.current_session(pool, POLICY, token + "x", now=now()) is None


async def test_a_refusal_reaches_the_next_page_once_through_the_session_not_the_url(pool):
    await _staff(pool, "flashed")
    token = await handlers.sign_in(pool, POLICY, username="flashed", password="a long enough password", now=now())
    session = await handlers.current_session(pool, POLICY, token, now=now())
    assert session is not None
    await handlers.flash(pool, session, "The package is placed: it cannot be re-offered")
    assert await handlers.take_flash(pool, session) == "The package is placed: it cannot be re-offered"
    assert await handlers.take_flash(pool, session) is None
