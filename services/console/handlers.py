"""One function per console command, each in one transaction: staff accounts, signing in and
out (staff through the identity provider or, where enabled, with a console password; providers
with their API credential), and reading a session.

Passwords are hashed with Argon2id (argon2-cffi's defaults, RFC 9106's second recommended
option); hashing runs in a thread so the event loop keeps serving meanwhile. Session tokens are
random 256-bit strings; only their SHA-256 is stored. A provider's API credential, which the
portal's calls need, is kept sealed with a key derived from the session's token itself (HKDF), so
the sessions table opens nothing without the browser's cookie.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from services.console import domain
from services.console import repository as repo
from services.runtime.db import Connection
from services.runtime.logging import get_logger
from services.runtime.outbox import unit_of_work

if TYPE_CHECKING:
    from services.console.oidc import OidcSignIn

log = get_logger(__name__)

HASHER = PasswordHasher()
# Verified against when the name is unknown, so an unknown name takes as long as a wrong password.
_DUMMY_HASH = HASHER.hash(secrets.token_urlsafe(16))


class Refused(Exception):
    """A request the console turns down, with the message to show (and the field it is about;
    ``problems``: every field's, when there are several)."""

    def __init__(self, message: str, *, field: str | None = None, problems: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.problems = problems or ({field: message} if field else {})


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
    id_token: str | None = None  # signed in through the identity provider: for ending its session there

    def can(self, permission: domain.Permission) -> bool:
        return self.kind == "staff" and domain.can(self.role, permission)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def add_staff(
    pool: asyncpg.Pool, *, username: str, display_name: str, role: str, password: str, created_by: str | None
) -> None:
    """A console password account (where they are on). Raises Refused with every problem of the
    answers at once (domain.staff_problems), or StaffExists."""
    problems = domain.staff_problems(username=username, display_name=display_name, role=role, password=password)
    if problems:
        field, message = next(iter(problems.items()))
        raise Refused(message, field=field, problems=problems)
    username = username.strip().lower()
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


def _session_fernet(token: str) -> Fernet:
    """The key sealing what a session keeps for its own use, derived from its token (HKDF-SHA256)."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"homecare-console-session").derive(token.encode())
    return Fernet(base64.urlsafe_b64encode(key))


async def _begin_attempt(pool: asyncpg.Pool, *, kind: str, who: str, address: str, now: dt.datetime) -> int:
    """Record an attempt as in flight, or Refused when too many have failed or are in flight.

    The decision and the record are one transaction under locks on the address and the account,
    so 40 concurrent guesses are counted one after another: at most the limit reach the password
    check (domain.SignInCounts)."""
    async with unit_of_work(pool) as uow:
        await repo.lock_attempts(uow.conn, kind=kind, who=who, address=address)
        counts = await repo.attempt_counts(
            uow.conn, kind=kind, who=who, address=address, since=now - domain.FAILED_SIGN_IN_WINDOW
        )
        if counts.throttled():
            raise Refused(TOO_MANY)
        return await repo.begin_attempt(uow.conn, kind=kind, who=who, address=address)


async def _open_session(
    conn: Connection,
    policy: domain.SessionPolicy,
    now: dt.datetime,
    credential: str | None = None,
    id_token: str | None = None,
    refresh_token: str | None = None,
    **who: str,
) -> str:
    token = secrets.token_urlsafe(32)
    fernet = _session_fernet(token)
    await repo.add_session(
        conn,
        token_hash=token_hash(token),
        csrf_token=secrets.token_urlsafe(32),
        expires_at=policy.expires_at(created_at=now, now=now),
        provider_credential_sealed=fernet.encrypt(credential.encode()).decode() if credential is not None else None,
        id_token_sealed=fernet.encrypt(id_token.encode()).decode() if id_token is not None else None,
        refresh_token_sealed=fernet.encrypt(refresh_token.encode()).decode() if refresh_token is not None else None,
        **who,
    )
    return token


TOO_MANY = "Too many failed sign-in attempts. Wait 15 minutes, then try again"
LOCAL_ACCOUNTS_OFF = "Sign in with your organisation's account: this console has no passwords of its own"


async def sign_in(
    pool: asyncpg.Pool,
    policy: domain.SessionPolicy,
    *,
    username: str,
    password: str,
    now: dt.datetime,
    address: str = "",
) -> str:
    """A new session's token, or Refused (the same message for an unknown name and a wrong password;
    :data:`LOCAL_ACCOUNTS_OFF` while the console's own accounts are off: ``policy.local_accounts``).

    ``address`` is where the attempt came from (the client's IP address), for throttling."""
    if not policy.local_accounts:
        raise Refused(LOCAL_ACCOUNTS_OFF)
    username = username.strip().lower()
    attempt = await _begin_attempt(pool, kind="staff", who=username, address=address, now=now)
    async with pool.acquire() as conn:
        staff = await repo.get_staff(conn, username)
    try:
        await asyncio.to_thread(HASHER.verify, staff["password_hash"] if staff else _DUMMY_HASH, password)
        ok = staff is not None and staff["active"]
    except (VerificationError, InvalidHashError):
        ok = False
    if staff is None or not ok:  # settled in a transaction of its own: raising inside one would roll the record back
        async with unit_of_work(pool) as uow:
            await repo.settle_attempt(uow.conn, attempt, kind="staff", who=username, succeeded=False)
        raise Refused("The username or password is not right")
    async with unit_of_work(pool) as uow:
        await repo.settle_attempt(uow.conn, attempt, kind="staff", who=username, succeeded=True)
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
    address: str = "",
) -> str:
    """The providers service decides whether the credential is the provider's (``verify`` asks
    its provider-scoped API); the console keeps it, sealed with the session's own token, for the
    session's calls."""
    provider_id = provider_id.strip()
    attempt = await _begin_attempt(pool, kind="provider", who=provider_id, address=address, now=now)
    ok = False
    try:
        ok = bool(provider_id and credential) and await verify(provider_id, credential)
    finally:
        if not ok:
            async with unit_of_work(pool) as uow:
                await repo.settle_attempt(uow.conn, attempt, kind="provider", who=provider_id, succeeded=False)
    if not ok:
        raise Refused("The provider id or credential is not right")
    async with unit_of_work(pool) as uow:
        await repo.settle_attempt(uow.conn, attempt, kind="provider", who=provider_id, succeeded=True)
        return await _open_session(
            uow.conn, policy, now, credential=credential, kind="provider", provider_id=provider_id
        )


async def current_session(
    pool: asyncpg.Pool,
    policy: domain.SessionPolicy,
    token: str | None,
    *,
    now: dt.datetime,
    idp: OidcSignIn | None = None,
    recheck_after: dt.timedelta = dt.timedelta(seconds=60),
) -> Session | None:
    """The live session for a cookie's token, its idle expiry pushed on; None when expired or unknown.

    A session begun at the identity provider (``idp``) is checked with it again when its last check
    is ``recheck_after`` old (decision 0166): it ends when the identity provider refuses its refresh
    token (the account disabled, signed out there) or says another console role or, for a provider's
    user, another provider or none. The identity provider unreachable: the session goes on, and is
    checked at the next request."""
    if not token:
        return None
    hashed = token_hash(token)
    async with unit_of_work(pool) as uow:
        row = await repo.live_session(uow.conn, hashed, local_accounts=policy.local_accounts)
        if row is None:
            return None
        expires_at = policy.expires_at(created_at=row["created_at"], now=now)
        await repo.extend_session(uow.conn, hashed, expires_at)
    fernet = _session_fernet(token)
    try:
        credential, id_token, refresh_token = (
            fernet.decrypt(row[sealed].encode()).decode() if row[sealed] is not None else None
            for sealed in ("provider_credential_sealed", "id_token_sealed", "refresh_token_sealed")
        )
    except InvalidToken:
        return None
    checked = row["idp_checked_at"]
    if idp is not None and refresh_token is not None and (checked is None or now - checked >= recheck_after):
        ended, new_id_token = await _recheck_at_idp(pool, idp, row, fernet, refresh_token)
        if ended:
            return None
        id_token = new_id_token or id_token
    return Session(
        token_hash=hashed,
        kind=row["kind"],
        csrf_token=row["csrf_token"],
        expires_at=expires_at,
        username=row["username"],
        display_name=row["display_name"],
        role=row["role"],
        provider_id=row["provider_id"],
        provider_credential=credential,
        id_token=id_token,
    )


@dataclass(frozen=True)
class StaffIdentity:
    """A staff member as the identity provider's ID token says: its stable subject, the username
    (``preferred_username``) recorded as who acts, the name shown, and the console role their
    realm roles map to (domain.role_from_idp)."""

    subject: str
    username: str
    display_name: str
    role: domain.Role | None  # None: no console role (a provider's staff user, for the portal alone)
    provider_staff: bool = False  # the identity provider's role provider_staff (decision 0126)
    provider_id: str | None = None  # the provider the token says they work for (decision 0165)


SIGN_IN_FLOW_MINUTES = 10  # from leaving for the identity provider to coming back with its answer


async def begin_oidc_sign_in(
    pool: asyncpg.Pool, *, state: str, nonce: str, code_verifier: str, next: str, now: dt.datetime
) -> str:
    """Keep a sign-in's state, nonce and PKCE code verifier (sealed) for its answer; returns the
    random key for the browser's cookie, under whose hash they are kept."""
    key = secrets.token_urlsafe(32)
    async with pool.acquire() as conn:
        await repo.add_oidc_sign_in(
            conn,
            key_hash=token_hash(key),
            state=state,
            nonce=nonce,
            code_verifier_sealed=_session_fernet(key).encrypt(code_verifier.encode()).decode(),
            next=next,
            expires_at=now + dt.timedelta(minutes=SIGN_IN_FLOW_MINUTES),
        )
    return key


@dataclass(frozen=True)
class PendingSignIn:
    state: str
    nonce: str
    code_verifier: str
    next: str


async def take_oidc_sign_in(pool: asyncpg.Pool, key: str | None) -> PendingSignIn | None:
    """The sign-in begun in this browser (its cookie's key), used up as it is read; None when the
    browser began none, it expired, or its answer was already used."""
    if not key:
        return None
    async with pool.acquire() as conn:
        row = await repo.take_oidc_sign_in(conn, token_hash(key))
    if row is None or not row["live"]:
        return None
    try:
        verifier = _session_fernet(key).decrypt(row["code_verifier_sealed"].encode()).decode()
    except InvalidToken:
        return None
    return PendingSignIn(state=row["state"], nonce=row["nonce"], code_verifier=verifier, next=row["next"])


async def oidc_sign_in(
    pool: asyncpg.Pool,
    policy: domain.SessionPolicy,
    identity: StaffIdentity,
    *,
    id_token: str,
    now: dt.datetime,
    refresh_token: str | None = None,
) -> str:
    """A new staff session's token for someone the identity provider signed in (no console account
    needed): name and role as its ID token said, the ID token kept sealed for signing out there, the
    refresh token sealed for checking with it again (decision 0166)."""
    async with unit_of_work(pool) as uow:
        return await _open_session(
            uow.conn,
            policy,
            now,
            id_token=id_token,
            refresh_token=refresh_token,
            kind="staff",
            username=identity.username,
            idp_subject=identity.subject,
            idp_display_name=identity.display_name,
            idp_role=identity.role.value if identity.role else "",
        )


async def portal_oidc_sign_in(
    pool: asyncpg.Pool,
    policy: domain.SessionPolicy,
    identity: StaffIdentity,
    *,
    provider_id: str,
    portal_role: str,
    id_token: str,
    now: dt.datetime,
    refresh_token: str | None = None,
) -> str:
    """A provider portal session for a named provider staff user (decision 0126): who they are from
    the ID token, their organisation and portal role (``provider_staff`` or ``provider_admin``) as
    the providers service said at sign-in; no credential (the console acts for them). The refresh
    token is kept sealed for checking with the identity provider again (decision 0166)."""
    async with unit_of_work(pool) as uow:
        return await _open_session(
            uow.conn,
            policy,
            now,
            id_token=id_token,
            refresh_token=refresh_token,
            kind="provider",
            provider_id=provider_id,
            username=identity.username,
            idp_subject=identity.subject,
            idp_display_name=identity.display_name,
            idp_role=portal_role,
        )


async def _recheck_at_idp(
    pool: asyncpg.Pool, idp: OidcSignIn, row: asyncpg.Record, fernet: Fernet, refresh_token: str
) -> tuple[bool, str | None]:
    """(whether the session has ended - deleted here -, its new ID token when the identity provider
    still agrees); (False, None) when the identity provider could not be asked."""
    from services.console.oidc import SignInFailed  # the sign-in module imports this one

    changed: str | None
    try:
        tokens = await idp.refresh(refresh_token)
        identity = await idp.checked_identity(tokens["id_token"], nonce=None)
    except SignInFailed as failed:
        if failed.status == 503:
            log.warning("the identity provider could not be asked whether a session goes on", reason=failed.reason)
            return False, None
        changed = failed.reason
    else:
        changed = _what_changed(row, identity)
    if changed:
        async with pool.acquire() as conn:
            await repo.delete_session(conn, row["token_hash"])
        log.info("session ended: the identity provider no longer agrees", kind=row["kind"], reason=changed)
        return True, None
    async with pool.acquire() as conn:
        await repo.rechecked_session(
            conn,
            row["token_hash"],
            id_token_sealed=fernet.encrypt(tokens["id_token"].encode()).decode(),
            refresh_token_sealed=fernet.encrypt(str(tokens.get("refresh_token") or refresh_token).encode()).decode(),
        )
    return False, str(tokens["id_token"])


def _what_changed(row: asyncpg.Record, identity: StaffIdentity) -> str | None:
    """Why a session may not go on with the identity provider's word now (a fixed code), or None."""
    if identity.subject != row["idp_subject"]:
        return "another_subject"
    if row["kind"] == "provider":
        if not identity.provider_staff:
            return "no_provider_staff_role"
        if identity.provider_id != row["provider_id"]:
            return "another_provider"
        return None
    if identity.role is None or identity.role.value != row["idp_role"]:
        return "another_role"
    return None


async def sign_out(pool: asyncpg.Pool, session: Session) -> None:
    async with unit_of_work(pool) as uow:
        await repo.delete_session(uow.conn, session.token_hash)


async def flash(pool: asyncpg.Pool, session: Session, message: str) -> None:
    """Leave a message (e.g. why an action was refused) for the session's next page."""
    async with pool.acquire() as conn:
        await repo.set_flash(conn, session.token_hash, message)


async def take_flash(pool: asyncpg.Pool, session: Session) -> str | None:
    """The session's waiting message, if any (shown once)."""
    async with pool.acquire() as conn:
        return await repo.take_flash(conn, session.token_hash)
