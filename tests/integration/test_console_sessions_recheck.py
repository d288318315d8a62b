"""A console session begun at the identity provider is checked with it again while it lasts
(decision 0166): found by an attack, a provider user whose account was disabled, signed out or moved
to another provider at Keycloak kept acting for the old provider until the session's idle or absolute
limit. On the real PostgreSQL, and the real Keycloak for its refusal of a signed-out session."""

from __future__ import annotations

import dataclasses
import datetime as dt

import httpx
import pytest

from services.console import domain, handlers
from services.console.oidc import UNAVAILABLE, OidcSignIn, SignInFailed
from services.runtime.settings import load
from tests.integration.test_console_accounts import pool  # noqa: F401 - the console's schema, migrated
from tests.integration.test_console_oidc import REDIRECT, sign_in_at_keycloak

pytestmark = pytest.mark.infra
POLICY = domain.SessionPolicy()
NOW = dt.timedelta(0)  # check at every request


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def test_a_portal_session_ends_once_its_user_signs_out_at_the_identity_provider(pool, identity):  # noqa: F811
    oidc = OidcSignIn(load("console"))
    code, authorization = await sign_in_at_keycloak(identity, oidc, "demo-provider")
    tokens = await oidc.exchange(code, code_verifier=authorization.code_verifier, redirect_uri=REDIRECT)
    who = await oidc.provider_staff_identity(tokens["id_token"], nonce=authorization.nonce)
    token = await handlers.portal_oidc_sign_in(
        pool,
        POLICY,
        who,
        provider_id="bluebell-care",
        portal_role="provider_admin",
        id_token=tokens["id_token"],
        refresh_token=tokens["refresh_token"],
        now=now(),
    )
    sealed = await pool.fetchval(
        "SELECT refresh_token_sealed FROM sessions WHERE token_hash = $1", handlers.token_hash(token)
    )
    assert sealed and tokens["refresh_token"] not in sealed  # kept sealed, never in clear
    # Checked with Keycloak, which still agrees: the session goes on, stamped with the check.
    before = await pool.fetchval(
        "SELECT idp_checked_at FROM sessions WHERE token_hash = $1", handlers.token_hash(token)
    )
    session = await handlers.current_session(pool, POLICY, token, now=now(), idp=oidc, recheck_after=NOW)
    assert session is not None and session.provider_id == "bluebell-care"
    after = await pool.fetchval("SELECT idp_checked_at FROM sessions WHERE token_hash = $1", handlers.token_hash(token))
    assert after > before
    # Signed out at Keycloak (its logout endpoint, as its own pages or an administrator would).
    metadata = await oidc.metadata()
    ended = httpx.post(
        metadata["end_session_endpoint"],
        data={
            "client_id": oidc.client_id,
            "client_secret": oidc.client_secret,
            "refresh_token": tokens["refresh_token"],
        },
        timeout=30,
    )
    assert ended.status_code == 204, ended.text
    with pytest.raises(SignInFailed) as refused:
        await oidc.refresh(tokens["refresh_token"])
    assert refused.value.reason == "refresh_refused"
    assert await handlers.current_session(pool, POLICY, token, now=now(), idp=oidc, recheck_after=NOW) is None
    assert await pool.fetchval("SELECT count(*) FROM sessions WHERE token_hash = $1", handlers.token_hash(token)) == 0


class SayingIdp:
    """An identity provider that says what a test wants of a refresh (the real one's answers are
    tested above): an identity, a refusal, or that it cannot be reached."""

    def __init__(self, identity: handlers.StaffIdentity | None, error: SignInFailed | None = None) -> None:
        self.identity, self.error, self.refreshed = identity, error, 0

    async def refresh(self, refresh_token: str) -> dict:
        self.refreshed += 1
        if self.error is not None:
            raise self.error
        return {"id_token": f"new-id-token-{self.refreshed}", "refresh_token": f"rotated-{self.refreshed}"}

    async def checked_identity(self, id_token: str, *, nonce: str | None) -> handlers.StaffIdentity:
        assert nonce is None and self.identity is not None
        return self.identity


PROVIDER_USER = handlers.StaffIdentity(
    subject="sub-1", username="pat", display_name="Pat", role=None, provider_staff=True, provider_id="bluebell-care"
)
MANAGER = handlers.StaffIdentity(subject="sub-2", username="mo", display_name="Mo", role=domain.Role.manager)


async def portal_session(pool) -> str:  # noqa: F811
    return await handlers.portal_oidc_sign_in(
        pool,
        POLICY,
        PROVIDER_USER,
        provider_id="bluebell-care",
        portal_role="provider_staff",
        id_token="id-token",
        refresh_token="refresh-token",
        now=now(),
    )


@pytest.mark.parametrize(
    ("says", "goes_on"),
    [
        (PROVIDER_USER, True),
        (dataclasses.replace(PROVIDER_USER, provider_id="ashby-care"), False),  # moved to another provider
        (dataclasses.replace(PROVIDER_USER, provider_id=None), False),  # the attribute removed
        (dataclasses.replace(PROVIDER_USER, provider_staff=False), False),  # the role removed
        (dataclasses.replace(PROVIDER_USER, subject="someone-else"), False),
    ],
)
async def test_a_portal_session_goes_on_only_while_the_identity_provider_says_the_same_provider(pool, says, goes_on):  # noqa: F811
    token = await portal_session(pool)
    idp = SayingIdp(says)
    session = await handlers.current_session(pool, POLICY, token, now=now(), idp=idp, recheck_after=NOW)  # type: ignore[arg-type]
    assert (session is not None) is goes_on
    if goes_on:
        assert session is not None and session.id_token == "new-id-token-1"  # for signing out there later
        # Checked a moment ago: not asked again until recheck_after has passed.
        await handlers.current_session(pool, POLICY, token, now=now(), idp=idp, recheck_after=dt.timedelta(minutes=1))  # type: ignore[arg-type]
        assert idp.refreshed == 1


async def test_a_staff_session_ends_when_the_identity_provider_says_another_role(pool):  # noqa: F811
    token = await handlers.oidc_sign_in(pool, POLICY, MANAGER, id_token="id", refresh_token="refresh", now=now())
    same = SayingIdp(MANAGER)
    assert await handlers.current_session(pool, POLICY, token, now=now(), idp=same, recheck_after=NOW) is not None  # type: ignore[arg-type]
    demoted = SayingIdp(dataclasses.replace(MANAGER, role=domain.Role.broker))
    assert await handlers.current_session(pool, POLICY, token, now=now(), idp=demoted, recheck_after=NOW) is None  # type: ignore[arg-type]


async def test_an_unreachable_identity_provider_does_not_end_a_session_and_is_asked_again(pool):  # noqa: F811
    token = await portal_session(pool)
    away = SayingIdp(None, UNAVAILABLE)
    assert await handlers.current_session(pool, POLICY, token, now=now(), idp=away, recheck_after=NOW) is not None  # type: ignore[arg-type]
    assert await handlers.current_session(pool, POLICY, token, now=now(), idp=away, recheck_after=NOW) is not None  # type: ignore[arg-type]
    assert away.refreshed == 2  # not stamped as checked: asked again at the next request
    refused = SayingIdp(None, SignInFailed("refresh_refused", "ended", 401))
    assert await handlers.current_session(pool, POLICY, token, now=now(), idp=refused, recheck_after=NOW) is None  # type: ignore[arg-type]
