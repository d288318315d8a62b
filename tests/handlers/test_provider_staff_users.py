"""Named staff users under a provider's organisation (decision 0126), the portal's inbox and history
(decision 0127), in-process on a real PostgreSQL with real RS256 tokens of the tests' own issuer
(tests/local_issuer.py): who a person is comes from the verified token, which organisation they
answer for from the providers service's membership; each answer records who; nothing personal
reaches an event; admin users (and the council's administrators) add and remove users."""

from __future__ import annotations

import uuid

import httpx

from tests import local_issuer
from tests.handlers.test_provider_answers_idempotent import bid_body, client, portal_market
from tests.handlers.test_providers_handlers import outbox


def as_user(service, username: str, roles=("provider_staff",), provider: str | None = None) -> httpx.AsyncClient:
    """A client with ``username``'s token; ``provider``: the organisation their account names (the
    identity provider's claim, decision 0165)."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=service.http_app),
        base_url="http://providers",
        headers=local_issuer.headers("providers", username, roles, provider),
    )


def admin(service) -> httpx.AsyncClient:
    return as_user(service, "demo-admin", ("council_admin",))


async def add(service, provider_id: str, username: str, role: str = "staff", name: str | None = None) -> dict:
    async with admin(service) as c:
        r = await c.post(
            f"/providers/{provider_id}/users", json={"username": username, "name": name or username, "role": role}
        )
    assert r.status_code == 201, r.text
    return r.json()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_a_named_user_answers_for_their_organisation_and_the_answer_records_who(in_memory):
    service, event, tokens = await portal_market(in_memory, 2)
    (pid, _), (other_pid, other_token) = sorted(tokens.items())
    username = unique("Sam.Carer")  # the identity provider's username, compared in lower case
    user = await add(service, pid, username, name="Sam Carer")
    assert user["username"] == username.lower() and user["added_by"] == "demo-admin"

    async with as_user(service, username, provider=pid) as c:
        me = await c.get("/me")
        assert me.status_code == 200, me.text
        assert me.json()["provider_id"] == pid
        assert me.json()["user"] == {
            "user_id": user["user_id"],
            "username": username.lower(),
            "name": "Sam Carer",
            "role": "staff",
        }
        bid = await c.post(f"/me/offers/{event.package_id}/bid", json=bid_body())
        assert bid.status_code == 200, bid.text
        history = (await c.get("/me/history")).json()
    row = await service.pool.fetchrow(
        "SELECT answered_by_user, answered_by_credential FROM offers WHERE package_id = $1 AND provider_id = $2",
        event.package_id,
        pid,
    )
    assert str(row["answered_by_user"]) == user["user_id"] and row["answered_by_credential"] is None
    [entry] = [h for h in history if h["package_id"] == str(event.package_id)]
    assert entry["answer"] == "bid" and entry["answered_by"] == {"user_id": user["user_id"], "name": "Sam Carer"}
    assert entry["outcome"] == "awaiting"

    # The other provider answers with its organisation's credential: recorded as the credential.
    async with client(service, other_token) as c:
        assert (await c.post(f"/me/offers/{event.package_id}/decline", json={"reason": "capacity"})).status_code == 200
    # The council's brokerage team sees who answered on the package page's data.
    async with as_user(service, "demo-broker", ("broker",)) as c:
        answers = {a["provider_id"]: a for a in (await c.get(f"/packages/{event.package_id}/answers")).json()}
    assert answers[pid]["answered_by"] == {"user_id": user["user_id"], "name": "Sam Carer"}
    assert answers[other_pid]["answered_by"] is None and answers[other_pid]["answered_with"] == "api_credential"
    # Nothing personal on the events: neither the name nor the username, nor even the user's id.
    payloads = " ".join(str(r["payload"]) for r in await outbox(service, event.package_id))
    for personal in ("Sam Carer", username.lower(), user["user_id"]):
        assert personal not in payloads


async def test_who_acts_is_the_tokens_member_never_the_request(in_memory):
    service, event, tokens = await portal_market(in_memory, 1)
    [pid] = tokens
    async with as_user(service, unique("stranger"), provider=pid) as c:  # named, but not its user
        refused = await c.get("/me")
    assert refused.status_code == 403 and refused.json()["code"] == "not-a-provider-user"
    assert pid in refused.json()["error"]
    async with as_user(service, "demo-broker", ("broker",)) as c:  # a council role is not a provider's
        assert (await c.get("/me")).status_code == 403
    username = unique("carer")
    await add(service, pid, username)
    async with as_user(service, username, provider=pid) as c:
        smuggled = await c.post(f"/me/offers/{event.package_id}/bid", json=bid_body() | {"answered_by": "someone-else"})
    assert smuggled.status_code == 422  # the body cannot name who answered
    assert (
        await service.pool.fetchval(
            "SELECT answered_at FROM offers WHERE package_id = $1 AND provider_id = $2", event.package_id, pid
        )
        is None
    )


async def test_admin_users_add_and_remove_their_own_users_and_removal_ends_access_at_once(in_memory):
    service, _, tokens = await portal_market(in_memory, 2)
    (pid, token), (other_pid, _) = sorted(tokens.items())
    boss, worker = unique("boss"), unique("worker")
    boss_user = await add(service, pid, boss, role="admin")
    async with as_user(service, boss, provider=pid) as c:
        added = await c.post("/me/users", json={"username": worker, "name": "Wren Worker"})
        assert added.status_code == 201, added.text
        assert added.json()["provider_id"] == pid and added.json()["added_by"] == boss
        again = await c.post("/me/users", json={"username": worker.upper(), "name": "Twice"})
        assert again.status_code == 409 and again.json()["code"] == "user-exists"
        bad = await c.post("/me/users", json={"username": "has space", "name": "X"})
        assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "username"
        listed = {u["username"] for u in (await c.get("/me/users")).json()}
        assert {boss, worker} <= listed
        own = await c.post(f"/me/users/{boss_user['user_id']}/remove")
        assert own.status_code == 409 and own.json()["code"] == "own-user"
        assert own.json()["fields"][0]["field"] == "user_id"
    # A staff user and the organisation's API credential manage no one.
    async with as_user(service, worker, provider=pid) as c:
        assert (await c.get("/me")).status_code == 200
        refused = await c.post("/me/users", json={"username": unique("x"), "name": "X"})
        assert refused.status_code == 403 and refused.json()["code"] == "not-a-provider-admin"
    async with client(service, token) as c:
        assert (await c.get("/me/users")).status_code == 403
    # Another organisation's admin cannot remove this one's user (not theirs: 404).
    stranger_admin = unique("other-admin")
    await add(service, other_pid, stranger_admin, role="admin")
    async with as_user(service, stranger_admin, provider=other_pid) as c:
        assert (await c.post(f"/me/users/{added.json()['user_id']}/remove")).status_code == 404
    async with as_user(service, boss, provider=pid) as c:
        removed = await c.post(f"/me/users/{added.json()['user_id']}/remove")
        assert removed.status_code == 200 and removed.json()["removed_at"]
    async with as_user(service, worker, provider=pid) as c:
        gone = await c.get("/me/offers")
    assert gone.status_code == 403 and gone.json()["code"] == "not-a-provider-user"
    # The council's administrators manage any provider's users.
    async with admin(service) as c:
        users = (await c.get(f"/providers/{pid}/users")).json()
        names = [u["username"] for u in users]
        assert boss in names and worker not in names  # a removed user is not listed
        assert (await c.post(f"/providers/{pid}/users/{boss_user['user_id']}/remove")).status_code == 200
    async with as_user(service, boss, provider=pid) as c:
        assert (await c.get("/me")).status_code == 403


async def test_an_offer_is_unread_until_someone_of_the_organisation_opens_it(in_memory):
    service, event, tokens = await portal_market(in_memory, 2)
    (pid, _), (other_pid, other_token) = sorted(tokens.items())
    first, second = unique("first"), unique("second")
    first_user = await add(service, pid, first)
    await add(service, pid, second)
    async with as_user(service, second, provider=pid) as c:
        inbox = (await c.get("/me/inbox")).json()
        [mine] = [o for o in inbox["offers"] if o["package_id"] == str(event.package_id)]
        assert mine["opened_at"] is None and inbox["unread"] >= 1
        unread_before = inbox["unread"]
    async with as_user(service, first, provider=pid) as c:
        opened = await c.post(f"/me/offers/{event.package_id}/open")
        assert opened.status_code == 200, opened.text
    async with as_user(service, second, provider=pid) as c:  # a colleague's opening counts for the organisation
        inbox = (await c.get("/me/inbox")).json()
        again = await c.post(f"/me/offers/{event.package_id}/open")
    assert inbox["unread"] == unread_before - 1
    assert again.json()["opened_at"] == opened.json()["opened_at"]  # the first opening is kept
    assert (
        str(
            await service.pool.fetchval(
                "SELECT opened_by_user FROM offers WHERE package_id = $1 AND provider_id = $2", event.package_id, pid
            )
        )
        == first_user["user_id"]
    )
    # The other organisation's copy of the offer is still unread; nobody opens an offer not theirs.
    async with client(service, other_token) as c:
        theirs = (await c.get("/me/inbox")).json()
        assert next(o for o in theirs["offers"] if o["package_id"] == str(event.package_id))["opened_at"] is None
        assert (await c.post(f"/me/offers/{uuid.uuid4()}/open")).status_code == 404
    assert other_pid != pid


async def test_the_history_lists_settled_offers_with_their_outcome_newest_first_by_cursor(in_memory):
    service, event, tokens = await portal_market(in_memory, 1)
    [(pid, token)] = tokens.items()
    async with client(service, token) as c:
        await c.post(f"/me/offers/{event.package_id}/decline", json={"reason": "capacity"})
    await service.pool.execute(
        """INSERT INTO offer_closures (notice_id, package_id, offer_round, provider_id, outcome, reason, closed_at)
           VALUES ($1, $2, $3, $4, 'closed', 'package_cancelled', now())""",
        uuid.uuid4(),
        event.package_id,
        event.offer_round,
        pid,
    )
    async with client(service, token) as c:
        everything = (await c.get("/me/history", params={"limit": 1000})).json()
        [entry] = [h for h in everything if h["package_id"] == str(event.package_id)]
        assert entry["answer"] == "declined" and entry["decline_reason"] == "capacity"
        assert entry["outcome"] == "closed" and entry["closed_reason"] == "package_cancelled"
        assert [h["received_at"] for h in everything] == sorted((h["received_at"] for h in everything), reverse=True)
        # Paged by cursor: the pages put together are the whole list, none twice.
        seen: list[tuple[str, int]] = []
        url: str | None = "/me/history?limit=2"
        while url:
            page = await c.get(url)
            seen += [(h["package_id"], h["offer_round"]) for h in page.json()]
            url = page.links.get("next", {}).get("url")
    assert seen == [(h["package_id"], h["offer_round"]) for h in everything]


async def test_a_providers_offers_show_bid_prices_only_to_roles_that_see_commercial_data(in_memory):
    """Found by an attack: operations (never persons or prices, docs/security.md) read every bid's
    hourly rate, won and lost, from ``GET /providers/{id}/offers``."""
    service, event, tokens = await portal_market(in_memory, 1)
    [(pid, token)] = tokens.items()
    async with client(service, token) as c:
        assert (await c.post(f"/me/offers/{event.package_id}/bid", json=bid_body())).status_code == 200
    seen = {}
    for role in ("operations", "manager", "council_admin"):
        async with as_user(service, f"demo-{role}", (role,)) as c:
            answer = await c.get(f"/providers/{pid}/offers")
        assert answer.status_code == 200, answer.text
        [offer] = [o for o in answer.json() if o["package_id"] == str(event.package_id)]
        assert offer["status"] == "bid"
        seen[role] = offer["hourly_rate"]
    assert seen["operations"] is None
    assert seen["manager"] == seen["council_admin"] == bid_body()["rate"]


async def test_the_organisation_is_the_identity_providers_claim_and_membership_is_per_organisation(in_memory):
    """Decision 0165, from an attack: a provider's admin could add another provider's staff member's
    username first, so that person signed in as the first organisation's user, and the 409 told an
    admin the username was some other provider's. Now the token names the organisation."""
    service, event, tokens = await portal_market(in_memory, 2)
    (pid, _), (other_pid, _) = sorted(tokens.items())
    sam = unique("sam")
    await add(service, other_pid, sam)  # Sam works for the other provider, which added them
    # The first provider's admin adds the same username: not refused, and nothing told of the other.
    boss = unique("boss")
    await add(service, pid, boss, role="admin")
    async with as_user(service, boss, provider=pid) as c:
        claimed = await c.post("/me/users", json={"username": sam, "name": "Sam (claimed)"})
    assert claimed.status_code == 201, claimed.text
    # Sam's account names the other provider: Sam answers for it alone, the claim is worth nothing.
    async with as_user(service, sam, provider=other_pid) as c:
        me = await c.get("/me")
    assert me.status_code == 200 and me.json()["provider_id"] == other_pid
    assert me.json()["user"]["name"] == sam  # the other provider's membership, not the claimed one
    # A token that names no provider is refused, whatever memberships its username has.
    async with as_user(service, sam) as c:
        unnamed = await c.get("/me")
        bid = await c.post(f"/me/offers/{event.package_id}/bid", json=bid_body())
    assert unnamed.status_code == 403 and unnamed.json()["code"] == "no-provider-claim"
    assert bid.status_code == 403
    # A claim that is not a provider id is no claim.
    headers = {"Authorization": f"Bearer {local_issuer.token('providers', sam, ('provider_staff',), 'NOT AN ID')}"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=service.http_app), base_url="http://providers", headers=headers
    ) as c:
        assert (await c.get("/me")).json()["code"] == "no-provider-claim"
    assert (
        await service.pool.fetchval(
            "SELECT answered_at FROM offers WHERE package_id = $1 AND provider_id = $2", event.package_id, pid
        )
        is None
    )
