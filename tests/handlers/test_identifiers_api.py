"""Identifiers reach the database in their canonical form whatever was typed, and obviously wrong
ones are a 422 naming the field: the brokerage's package request and the notifications service's
recipients, through their HTTP APIs in-process, on the real PostgreSQL."""

from __future__ import annotations

import copy
import random
import uuid

import httpx
import pytest

from services.notifications.app import build as build_notifications
from services.runtime.reference import load_framework
from services.simulator.synthetic import package_request
from tests import local_issuer
from tests.handlers.market import ZONE


def body(**person) -> dict:
    request = package_request(random.Random(3), load_framework(), ZONE, index=1)
    request["person"] |= person
    return request


def client(service) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=service.http_app),
        base_url="http://service",
        headers=local_issuer.headers(service.name),
    )


async def test_a_package_requests_identifiers_are_stored_in_canonical_form(brokerage):
    service, _broker, _rules, _ids = brokerage
    request = body(
        postcode=" ng13\u00a00aa ",
        nhs_number="999\u2013876\u20135439",
        phone="+44 (0)7700-900 123",
        email=" Ada.Abbott@Example.ORG ",
    )
    request["postcode_district"] = "ng13 "
    response = await client(service).post("/packages", json=request)
    assert response.status_code == 201, response.text
    package_id = uuid.UUID(response.json()["package_id"])
    row = await service.pool.fetchrow(
        "SELECT postcode, nhs_number, phone, email FROM persons WHERE package_id = $1", package_id
    )
    assert dict(row) == {
        "postcode": "NG13 0AA",
        "nhs_number": "9998765439",
        "phone": "+447700900123",
        "email": "Ada.Abbott@example.org",
    }
    district = await service.pool.fetchval(
        "SELECT spec->>'postcode_district' FROM packages WHERE package_id = $1", package_id
    )
    assert district == "NG13"


BAD = [
    (("person", "nhs_number"), "0000000000", "person.nhs_number", "all ten digits"),
    (("person", "nhs_number"), "1111111111", "person.nhs_number", "all ten digits"),
    (("person", "nhs_number"), "9999999999", "person.nhs_number", "all ten digits"),
    (("person", "nhs_number"), "943 476 5919", "person.nhs_number", "outside every range"),
    (("person", "postcode"), "NG13 0AI", "person.postcode", "postcode"),
    (("person", "postcode"), "LE65 1AA", "person.postcode", "not in district"),
    (("person", "phone"), "12345", "person.phone", "phone"),
    (("person", "email"), "ada@example", "person.email", "email"),
    (("postcode_district",), "LE65", "postcode_district", "not in zone"),
    (("postcode_district",), "N G", "postcode_district", "district"),
]


@pytest.mark.parametrize(("path", "value", "field", "why"), BAD, ids=[f"{b[2]}={b[1]}" for b in BAD])
async def test_an_obviously_wrong_identifier_is_a_422_naming_the_field(brokerage, path, value, field, why):
    service, _broker, _rules, _ids = brokerage
    request = copy.deepcopy(body())
    target = request
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    before = await service.pool.fetchval("SELECT count(*) FROM persons")
    response = await client(service).post("/packages", json=request)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert [f["field"] for f in problem["fields"]] == [field] and why in problem["fields"][0]["message"]
    assert await service.pool.fetchval("SELECT count(*) FROM persons") == before, "nothing half-written"


async def test_a_recipients_phone_and_email_are_stored_canonical_and_a_landline_cannot_take_texts(in_memory):
    service, _broker = await in_memory(build_notifications, "notifications")
    api = client(service)
    package_id = str(uuid.uuid4())
    response = await api.put(
        f"/recipients/person/{package_id}",
        json={"phone": "\u00a007700-900\u00a0123 ", "email": "Family@Example.ORG", "channels": ["notify_sms", "log"]},
    )
    assert response.status_code == 200, response.text
    row = await service.pool.fetchrow(
        "SELECT phone, email FROM recipients WHERE kind = 'person' AND recipient_id = $1", package_id
    )
    assert dict(row) == {"phone": "+447700900123", "email": "Family@example.org"}
    for field, value, why in (("phone", "0116 496 0123", "mobile"), ("email", "family@", "email")):
        refused = await api.put(f"/recipients/person/{package_id}", json={field: value, "channels": ["log"]})
        assert refused.status_code == 422, refused.text
        assert refused.json()["fields"][0]["field"] == field and why in refused.json()["fields"][0]["message"]
