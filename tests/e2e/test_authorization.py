"""Every operation of every service's API, called as the services run (separate processes, tokens
from the real identity provider): without a token, with each role's token, with tokens that must
not pass. The operations come from each service's own OpenAPI document and the expected answers
from the permission table (services/runtime/permissions.py), so a new route cannot be forgotten:
one missing from the table fails here (and in tests/unit/test_permissions.py)."""

from __future__ import annotations

import random
import re
import time
import uuid

import httpx
import pytest

from services.runtime import permissions
from services.runtime.reference import load_framework
from services.simulator.synthetic import package_request
from tests.support import SERVICES, USER_OF_ROLE, bearer_of, staff

pytestmark = [pytest.mark.infra, pytest.mark.e2e]

# Values for the path parameters: none of them exists, so an allowed call ends in a 404 or 422
# (or a harmless change), never in a change to the tests' other data.
PATH_VALUES = {
    "package_id": str(uuid.UUID(int=0)),
    "provider_id": "no-such-provider",
    "credential_id": "no-such-credential",
    "request_id": "999999",
    # A person's contact: its writers are the route's table entry (a provider's, the brokerage team's and
    # another broker's are narrower, CONTACT_WRITERS, tested in tests/handlers/test_notifications_handlers.py);
    # not a package id, so an allowed call is a 422 and nothing is stored.
    "kind": "person",
    "recipient_id": "authorization-test",
    "name": "packages.csv",  # a reporting export
    "change_id": str(uuid.UUID(int=0)),  # a change to a running package
    # The quality register (decision 0103): a complaint, a plan, a CQC import.
    "complaint_id": str(uuid.UUID(int=0)),
    "plan_id": str(uuid.UUID(int=0)),
    "import_id": str(uuid.UUID(int=0)),
    "delivery_id": str(uuid.UUID(int=0)),  # a webhook delivery (provider self-service)
    "application_id": str(uuid.UUID(int=0)),  # an application to join the framework
    "concern_id": str(uuid.UUID(int=0)),  # a safeguarding concern
    "user_id": str(uuid.UUID(int=0)),  # a provider's named staff user (decision 0126)
}


def operations(stack) -> list[tuple[str, str, str]]:
    """(service, METHOD, path template) of every operation the running services document."""
    found = []
    for service in SERVICES:
        document = httpx.get(f"{stack.url(service)}/openapi.json", timeout=10).json()
        for path, methods in document["paths"].items():
            for method in methods:
                found.append((service, method.upper(), path))
    return found


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path)


# Operations that take a file, not JSON (the edge answers a JSON body there with a 415, before any
# token is looked at): sent an empty CSV.
FILE_OPERATIONS = {("providers", "POST", "/quality/cqc-imports")}


def call(stack, service: str, method: str, path: str, **kwargs) -> httpx.Response:
    url = f"{stack.url(service)}{concrete(path)}"
    if (service, method, path) in FILE_OPERATIONS:
        headers = {**kwargs.pop("headers", {}), "Content-Type": "text/csv"}
        return httpx.request(method, url, timeout=10, content=b"", headers=headers, **kwargs)
    body: dict | None = {} if method in ("POST", "PUT", "PATCH") else None
    return httpx.request(method, url, timeout=10, json=body, **kwargs)


def test_every_documented_operation_is_in_the_permission_table(stack):
    ops = operations(stack)
    assert len(ops) > 40
    missing = [op for op in ops if permissions.rule_for(*op) is None]
    assert not missing, f"operations missing from services/runtime/permissions.py: {missing}"


def test_without_a_token_every_operation_but_the_asyncapi_document_is_401_on_the_api_port(stack):
    answers = {}
    for service, method, path in operations(stack):
        status = call(stack, service, method, path).status_code
        rule = permissions.rule_for(service, method, path)
        answers[(service, method, path)] = status
        if rule is permissions.PUBLIC:
            assert status in (200, 503), (service, method, path, status)
        else:
            assert status == 401, (service, method, path, status)
    assert sum(status == 401 for status in answers.values()) > 40


@pytest.mark.parametrize("role", sorted(USER_OF_ROLE))
def test_each_role_gets_exactly_the_permission_tables_answer(stack, role):
    headers = bearer_of(USER_OF_ROLE[role])
    wrong = []
    for service, method, path in operations(stack):
        rule = permissions.rule_for(service, method, path)
        if rule is permissions.PUBLIC:
            continue
        status = call(stack, service, method, path, headers=headers).status_code
        if rule is permissions.PROVIDER_CREDENTIAL:
            # The provider API: a named provider staff user's token (demo-provider is an admin user of
            # bluebell-care, deploy/reference/provider-staff.yaml; decision 0126) like a credential;
            # any other role's token is refused.
            right = (status not in (401, 403) and status < 500) if role == permissions.PROVIDER_STAFF else status == 403
        elif rule is permissions.INTERNAL:
            right = status == 200  # health and metrics: any valid token on the API port
        elif rule is not None and role in rule:
            right = status not in (401, 403) and status < 500
        else:
            right = status == 403
        if not right:
            wrong.append((service, method, path, status))
    assert not wrong, f"{role}: answers that differ from the permission table: {wrong}"


def test_services_accounts_get_only_what_the_table_gives_them(stack, identity):
    disclosure = {
        "package_id": PATH_VALUES["package_id"],
        "provider_id": "no-such-provider",
        "credential_id": "0123456789abcdef",
        "fields": ["email"],
    }
    url = f"{stack.url('brokerage')}/internal/disclosures"
    # The providers service's own account may ask for a disclosure (here: of no package, so 404)...
    assert httpx.post(url, json=disclosure, auth=identity.client("providers")).status_code == 404
    # ...nobody else may: not the console's account, not a person of any role.
    assert httpx.post(url, json=disclosure, auth=identity.client("console")).status_code == 403
    for user in USER_OF_ROLE.values():
        assert httpx.post(url, json=disclosure, auth=staff(user)).status_code == 403
    # The providers service's token is for the brokerage's API alone.
    assert httpx.get(f"{stack.url('providers')}/providers", auth=identity.client("providers")).status_code == 401


def test_only_the_consoles_account_may_act_for_a_staff_member(stack, identity):
    url = f"{stack.url('brokerage')}/packages/{PATH_VALUES['package_id']}/person"
    acting = {"X-Acting-User": "someone", "X-Acting-Role": "manager"}
    # A broker claiming to act as someone else, and another service's account: refused.
    assert httpx.get(url, headers=acting, auth=staff("demo-ops")).status_code == 403
    assert httpx.get(url, headers=acting, auth=identity.client("providers")).status_code == 403
    # The console's account, for a broker: the broker's rights (no such package: 404); for
    # operations: refused like operations are; with no role: refused as a bad request.
    console = identity.client("console")
    assert httpx.get(url, headers=acting | {"X-Acting-Role": "broker"}, auth=console).status_code == 404
    assert httpx.get(url, headers=acting | {"X-Acting-Role": "operations"}, auth=console).status_code == 403
    assert httpx.get(url, headers={"X-Acting-User": "someone"}, auth=console).status_code == 422
    # On its own, the console's account reads only the reference data its forms need.
    assert httpx.get(url, auth=console).status_code == 403
    assert httpx.get(f"{stack.url('brokerage')}/reference/zones", auth=console).status_code == 200


def test_a_provider_users_organisation_is_the_one_their_account_names(stack, identity):
    """Decision 0165: the realm's mapper puts the account's provider_id attribute in the token; the
    console passes on what the user's own token named, and nothing else names an organisation."""
    me = f"{stack.url('providers')}/me"
    own = httpx.get(me, auth=staff("demo-provider"))  # the realm names bluebell-care on this account
    assert own.status_code == 200, own.text
    assert own.json()["provider_id"] == "bluebell-care"
    console = identity.client("console")
    acting = {"X-Acting-User": "demo-provider", "X-Acting-Role": "provider_staff"}
    assert httpx.get(me, headers=acting | {"X-Acting-Provider": "bluebell-care"}, auth=console).status_code == 200
    other = httpx.get(me, headers=acting | {"X-Acting-Provider": "oak-lane-care"}, auth=console)
    assert other.status_code == 403 and other.json()["code"] == "not-a-provider-user"
    unnamed = httpx.get(me, headers=acting, auth=console)
    assert unnamed.status_code == 403 and unnamed.json()["code"] == "no-provider-claim"
    # Only with the provider_staff role, only a provider id, only from the console's account.
    as_broker = httpx.get(
        me, headers=acting | {"X-Acting-Role": "broker", "X-Acting-Provider": "bluebell-care"}, auth=console
    )
    assert as_broker.status_code == 422 and as_broker.json()["fields"][0]["field"] == "X-Acting-Provider"
    assert httpx.get(me, headers=acting | {"X-Acting-Provider": "Bluebell Care"}, auth=console).status_code == 422
    forged = httpx.get(me, headers=acting | {"X-Acting-Provider": "bluebell-care"}, auth=staff("demo-provider"))
    assert forged.status_code == 403 and forged.json()["code"] == "acting-for-not-allowed"
    # The provider header on its own is refused too, not ignored (found by an attack).
    alone = httpx.get(me, headers={"X-Acting-Provider": "bluebell-care"}, auth=staff("demo-provider"))
    assert alone.status_code == 403 and alone.json()["code"] == "acting-for-not-allowed"


def test_tokens_that_must_not_pass_are_401_on_every_service(stack, identity):
    good = identity.token("demo-manager")
    header, payload, signature = good.split(".")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    probes = {
        "no audience of ours": identity.token("demo-manager", client_id="audience-probe"),
        "bad signature": f"{header}.{payload}.{flipped}",
        "not a JWT": "hcp_abc_def",
    }
    for service in SERVICES:
        path = {
            "brokerage": "/packages",
            "providers": "/providers",
            "notifications": "/recipients/broker/x",
            "reporting": "/kpis",
        }[service]
        for name, token in probes.items():
            r = httpx.get(f"{stack.url(service)}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10)
            assert r.status_code == 401, (service, name, r.text)
            assert r.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"', (service, name)
        ok = httpx.get(f"{stack.url(service)}{path}", headers={"Authorization": f"Bearer {good}"}, timeout=10)
        assert ok.status_code in (200, 404), (service, ok.text)


def test_commercial_data_only_for_roles_with_the_right(stack):
    body = package_request(random.Random(5), load_framework(), "melton", index=5)
    package_id = httpx.post(f"{stack.url('brokerage')}/packages", json=body, auth=staff(), timeout=10).json()[
        "package_id"
    ]
    url = f"{stack.url('brokerage')}/packages/{package_id}"
    # Wait until someone has answered, so there is a price to hide.
    for _ in range(150):
        seen = httpx.get(url, auth=staff("demo-manager"), timeout=10).json()
        answers = [a for r in seen["offer_rounds"] for a in r["answers"] if a["kind"] == "bid"]
        if answers:
            break
        time.sleep(0.2)
    assert answers and all(a["hourly_rate"] for a in answers)
    hidden = httpx.get(url, auth=staff("demo-ops"), timeout=10).json()
    bids = [a for r in hidden["offer_rounds"] for a in r["answers"] if a["kind"] == "bid"]
    assert bids and all(a["hourly_rate"] is None for a in bids) and hidden["hourly_rate"] is None
    assert httpx.get(f"{url}/explanation", auth=staff("demo-ops"), timeout=10).status_code == 403
    # Found by an attack: the timeline's placed step still named the award's rate to operations
    # (and to the review team).
    for _ in range(150):
        seen = httpx.get(url, auth=staff("demo-manager"), timeout=10).json()
        priced = [t for t in seen["timeline"] if "hourly_rate" in t["detail"]]
        if priced:
            break
        time.sleep(0.2)
    assert priced and all(t["detail"]["hourly_rate"] for t in priced)
    for reader in ("demo-ops", "demo-reviewer"):
        view = httpx.get(url, auth=staff(reader), timeout=10).json()
        steps = [t for t in view["timeline"] if "hourly_rate" in t["detail"]]
        assert [t["stage"] for t in steps] == [t["stage"] for t in priced], reader
        assert all(t["detail"]["hourly_rate"] is None for t in steps), reader
