"""The published event contracts: committed schemas match the models, old samples still parse,
bad messages are refused, and no event can carry a person's details."""

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from schemas import export
from schemas.events import EVENT_TYPES, parse_event
from schemas.topics import TOPIC_OF

SCHEMAS = Path(export.__file__).parent
PERSONAL_FIELDS = {
    "full_name",
    "name_of_person",
    "address",
    "postcode",
    "phone",
    "email",
    "nhs_number",
    "date_of_birth",
    "care_notes",
}


def test_committed_json_schemas_match_the_models():
    rendered = export.rendered()
    committed = {p.name: p.read_text() for p in (SCHEMAS / "json").glob("*.json")}
    assert committed.keys() == rendered.keys(), "run: python -m schemas.export"
    for name, text in rendered.items():
        assert committed[name] == text, f"{name} is stale: run python -m schemas.export"


@pytest.mark.parametrize("sample", sorted((SCHEMAS / "samples").glob("*.json")), ids=lambda p: p.name)
def test_every_committed_sample_still_parses(sample):
    event = parse_event(sample.read_bytes())
    assert sample.name.startswith(f"{event.event_type}.v{event.schema_version}")


def test_there_is_a_sample_and_a_topic_for_every_event_type():
    samples = {p.name.split(".")[0] for p in (SCHEMAS / "samples").glob("*.json")}
    assert samples == set(EVENT_TYPES)
    assert {m.model_fields["event_type"].default for m in TOPIC_OF} == set(EVENT_TYPES)


def _fields(schema: dict) -> set[str]:
    names = set()
    for definition in [schema, *schema.get("$defs", {}).values()]:
        names |= set(definition.get("properties", {}))
    return names


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_no_event_has_a_field_for_personal_details(event_type):
    schema = EVENT_TYPES[event_type].model_json_schema()
    assert not (_fields(schema) & PERSONAL_FIELDS)


def _sample(name: str) -> dict:
    return json.loads((SCHEMAS / "samples" / f"{name}.v1.json").read_text())


@pytest.mark.parametrize(
    "mutate, complaint",
    [
        (lambda e: e | {"event_type": "PackageTeleported"}, "event_type"),
        (lambda e: e | {"schema_version": 99}, "schema_version"),
        (lambda e: e | {"full_name": "Ada Abbott"}, "full_name"),
        (lambda e: {k: v for k, v in e.items() if k != "package_id"}, "package_id"),
        (lambda e: e | {"hourly_rate": "-3"}, "hourly_rate"),
    ],
)
def test_bad_messages_are_refused_with_the_field_named(mutate, complaint):
    with pytest.raises(ValidationError) as err:
        parse_event(json.dumps(mutate(_sample("BidSubmitted"))))
    assert complaint in str(err.value)


def test_garbage_is_refused():
    for raw in (b"", b"not json", b"[]", b"\xff\xfe"):
        with pytest.raises((ValidationError, ValueError)):
            parse_event(raw)


def test_committed_asyncapi_documents_match_the_services(monkeypatch):
    from services.runtime import asyncapi

    monkeypatch.delenv("HOMECARE_NAMESPACE", raising=False)
    rendered = asyncapi.rendered()
    committed = {p.name: p.read_text() for p in asyncapi.DOCS.glob("*.json")}
    assert committed.keys() == rendered.keys(), "run: python -m services.runtime.asyncapi"
    for name, text in rendered.items():
        assert committed[name] == text, f"docs/asyncapi/{name} is stale: run python -m services.runtime.asyncapi"
        document = json.loads(text)
        assert document["asyncapi"] == "3.0.0" and document["channels"]


def test_committed_openapi_documents_match_the_services():
    """docs/openapi/ is what providers' developers build adapters from: it must be current."""
    from services.runtime import openapi

    rendered = openapi.rendered()
    committed = {p.name: p.read_text() for p in openapi.DOCS.glob("*.json")}
    assert committed.keys() == rendered.keys(), "run: python -m services.runtime.openapi"
    for name, text in rendered.items():
        assert committed[name] == text, f"docs/openapi/{name} is stale: run python -m services.runtime.openapi"
    provider_api = json.loads(rendered["providers.json"])["paths"]
    for path in (
        "/me",
        "/me/offers",
        "/me/offers/{package_id}/bid",
        "/me/offers/{package_id}/decline",
        "/me/packages",
        "/me/packages/{package_id}/person",
        "/me/change-requests",
        "/me/deliveries",
    ):
        assert path in provider_api
