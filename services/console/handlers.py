"""One function per console command, each in one transaction: staff accounts, signing in and
out (staff with a password, providers with their API credential), and reading a session.

Passwords are hashed with Argon2id (argon2-cffi's defaults, RFC 9106's second recommended
option); hashing runs in a thread so the event loop keeps serving meanwhile. Session tokens are
random 256-bit strings; only their SHA-256 is stored.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from services.console import domain
from services.console import repository as repo
from services.runtime.db import Connection
from services.runtime.outbox import unit_of_work

HASHER = PasswordHasher()
# Verified against when the name is unknown, so an unknown name takes as long as a wrong password.
_DUMMY_HASH = HASHER.hash(secrets.token_urlsafe(16))


class Refused(Exception):
    """A request the console turns down, with the message to show (and the field it is about)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class StaffExists(Refused):
    """The username is taken."""


@dataclass(frozen=True)
class Session:
    token_hash: bytes
    kind: str  # staff | provider
    csrf_token: str
    expires_at: dt.datetime
    username: str | None = None
    display_name: str | None = None
    role: str | None = None
    provider_id: str | None = None
    provider_credential: str | None = None

    def can(self, permission: domain.Permission) -> bool:
        return self.kind == "staff" and domain.can(self.role, permission)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def add_staff(
    pool: asyncpg.Pool, *, username: str, display_name: str, role: str, password: str, created_by: str | None
) -> None:
    username = username.strip().lower()
    if not domain.USERNAME.match(username):
        raise Refused(
            "Username must be 2 to 64 lowercase letters, digits, dots, dashes or underscores", field="username"
        )
    if not display_name.strip():
        raise Refused("Enter the person's name", field="display_name")
    if role not in {r.value for r in domain.Role}:
        raise Refused("Select a role", field="role")
    if problem := domain.password_problem(password):
        raise Refused(problem, field="password")
    hashed = await asyncio.to_thread(HASHER.hash, password)
    async with unit_of_work(pool) as uow:
        if not await repo.add_staff(
            uow.conn,
            username=username,
            display_name=display_name.strip(),
            role=role,
            password_hash=hashed,
            created_by=created_by,
        ):
            raise StaffExists(f"There is already a staff account called {username}", field="username")


async def set_active(pool: asyncpg.Pool, username: str, active: bool) -> None:
    async with unit_of_work(pool) as uow:
        if not await repo.set_active(uow.conn, username, active):
            raise Refused(f"No staff account called {username}")


async def _throttled(conn: Connection, kind: str, who: str, now: dt.datetime) -> bool:
    failures = await repo.recent_failures(conn, kind=kind, who=who, since=now - domain.FAILED_SIGN_IN_WINDOW)
    return failures >= domain.MAX_FAILED_SIGN_INS


async def _open_session(conn: Connection, policy: domain.SessionPolicy, now: dt.datetime, **who: str) -> str:
    token = secrets.token_urlsafe(32)
    await repo.add_session(
        conn,
        token_hash=token_hash(token),
        csrf_token=secrets.token_urlsafe(32),
        expires_at=policy.expires_at(created_at=now, now=now),
        **who,
    )
    return token


TOO_MANY = "Too many failed sign-in attempts. Wait 15 minutes, then try again"


async def sign_in(
    pool: asyncpg.Pool, policy: domain.SessionPolicy, *, username: str, password: str, now: dt.datetime
) -> str:
    """A new session's token, or Refused (the same message for an unknown name and a wrong password)."""
    username = username.strip().lower()
    async with pool.acquire() as conn:
        if await _throttled(conn, "staff", username, now):
            raise Refused(TOO_MANY)
        staff = await repo.get_staff(conn, username)
    try:
        await asyncio.to_thread(HASHER.verify, staff["password_hash"] if staff else _DUMMY_HASH, password)
        ok = staff is not None and staff["active"]
    except (VerificationError, InvalidHashError):
        ok = False
    if staff is None or not ok:  # recorded in a transaction of its own: raising inside one would roll the record back
        async with unit_of_work(pool) as uow:
            await repo.record_attempt(uow.conn, kind="staff", who=username, succeeded=False)
        raise Refused("The username or password is not right")
    async with unit_of_work(pool) as uow:
        await repo.record_attempt(uow.conn, kind="staff", who=username, succeeded=True)
        if HASHER.check_needs_rehash(staff["password_hash"]):  # parameters raised since it was set
            await repo.set_password_hash(uow.conn, username, await asyncio.to_thread(HASHER.hash, password))
        return await _open_session(uow.conn, policy, now, kind="staff", username=username)


async def provider_sign_in(
    pool: asyncpg.Pool,
    policy: domain.SessionPolicy,
    *,
    provider_id: str,
    credential: str,
    now: dt.datetime,
    verify: Callable[[str, str], Awaitable[bool]],
) -> str:
    """The providers service decides whether the credential is the provider's (``verify`` asks
    its provider-scoped API); the console only remembers it for the session."""
    provider_id = provider_id.strip()
    async with pool.acquire() as conn:
        if await _throttled(conn, "provider", provider_id, now):
            raise Refused(TOO_MANY)
    ok = bool(provider_id and credential) and await verify(provider_id, credential)
    if not ok:
        async with unit_of_work(pool) as uow:
            await repo.record_attempt(uow.conn, kind="provider", who=provider_id, succeeded=False)
        raise Refused("The provider id or credential is not right")
    async with unit_of_work(pool) as uow:
        await repo.record_attempt(uow.conn, kind="provider", who=provider_id, succeeded=True)
        return await _open_session(
            uow.conn, policy, now, kind="provider", provider_id=provider_id, provider_credential=credential
        )


async def current_session(
    pool: asyncpg.Pool, policy: domain.SessionPolicy, token: str | None, *, now: dt.datetime
) -> Session | None:
    """The live session for a cookie's token, its idle expiry pushed on; None when expired or unknown."""
    if not token:
        return None
    hashed = token_hash(token)
    async with unit_of_work(pool) as uow:
        row = await repo.live_session(uow.conn, hashed)
        if row is None:
            return None
        expires_at = policy.expires_at(created_at=row["created_at"], now=now)
        await repo.extend_session(uow.conn, hashed, expires_at)
    return Session(
        token_hash=hashed,
        kind=row["kind"],
        csrf_token=row["csrf_token"],
        expires_at=expires_at,
        username=row["username"],
        display_name=row["display_name"],
        role=row["role"],
        provider_id=row["provider_id"],
        provider_credential=row["provider_credential"],
    )


async def sign_out(pool: asyncpg.Pool, session: Session) -> None:
    async with unit_of_work(pool) as uow:
        await repo.delete_session(uow.conn, session.token_hash)
