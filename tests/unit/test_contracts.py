"""The published event contracts: committed schemas match the models, old samples still parse,
bad messages are refused, and no event can carry a person's details or words people typed."""

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from schemas import export
from schemas.events import EVENT_TYPES, parse_event, parse_event_as_sent
from schemas.legacy import LEGACY
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
    """Every version ever published parses; an old one is upgraded to the current model."""
    as_sent = parse_event_as_sent(sample.read_bytes())
    event_type = as_sent.model_fields["event_type"].default
    assert sample.name.startswith(f"{event_type}.v{as_sent.schema_version}.")
    event = parse_event(sample.read_bytes())
    assert type(event) is EVENT_TYPES[event_type]
    assert event.event_id == as_sent.event_id and event.occurred_at == as_sent.occurred_at


def test_there_is_a_sample_and_a_topic_for_every_event_type_and_version():
    samples = {tuple(p.name.split(".")[:2]) for p in (SCHEMAS / "samples").glob("*.json")}
    current = {(t, f"v{m.model_fields['schema_version'].default}") for t, m in EVENT_TYPES.items()}
    legacy = {(t, f"v{v}") for t, v in LEGACY}
    assert samples == current | legacy
    assert {m.model_fields["event_type"].default for m in TOPIC_OF} == set(EVENT_TYPES)


def test_an_old_events_typed_words_do_not_survive_its_upgrade():
    """v1 events carried what staff typed; upgraded, they carry the code ``other`` and no words."""
    for name, words in (
        ("PackageCancelled", "Person moved to residential care"),
        ("OfferDeclined", None),
        ("NotificationFailed", "550 5.1.1"),
    ):
        raw = (SCHEMAS / "samples" / f"{name}.v1.json").read_text()
        sent = json.loads(raw)
        typed = words or sent["reason_text"]
        assert typed in raw
        upgraded = parse_event(raw).model_dump_json()
        assert typed not in upgraded, name
    cancelled = parse_event((SCHEMAS / "samples" / "PackageCancelled.v1.json").read_bytes())
    assert getattr(cancelled, "reason", None) == "other"
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


# ---- no free text on any event -----------------------------------------------------------------

# The only strings on events that are neither codes, ids with a pattern, nor dates - each with why.
FREE_STRINGS_ALLOWED = {
    # A provider's registered trading name (as on the CQC register): public reference data set by
    # the brokerage team in the registry, never typed about a person or a package.
    ("ProviderProfile", "name"),
}
STRING_FORMATS = {"date", "date-time", "uuid"}


def unconstrained_strings(schema: dict) -> list[str]:
    """Every string in the schema that could hold any text: not an enum or const, not a pattern,
    not a date/time/uuid format, not the string form of a number (pydantic's Decimal), and not
    allow-listed. Returned as ``Model.field`` paths."""
    found = []
    definitions = {"": schema} | schema.get("$defs", {})

    def walk(node: dict, where: str, number_too: bool = False) -> None:
        for key in ("anyOf", "oneOf", "allOf"):
            if key in node:
                numeric = any(branch.get("type") in ("number", "integer") for branch in node[key])
                for branch in node[key]:
                    walk(branch, where, numeric)
        if "items" in node:
            walk(node["items"], where)
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], where)
        if node.get("type") == "string" and not (
            "enum" in node or "const" in node or "pattern" in node or node.get("format") in STRING_FORMATS or number_too
        ):
            found.append(where)

    for name, definition in definitions.items():
        model = name or definition.get("title", "")
        for field, node in definition.get("properties", {}).items():
            if (model, field) not in FREE_STRINGS_ALLOWED:
                walk(node, f"{model}.{field}")
    return found


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_no_event_has_a_field_for_free_text(event_type):
    """Issue 14, item 3: reason codes from fixed vocabularies, never the words people type."""
    schema = EVENT_TYPES[event_type].model_json_schema(mode="validation")
    assert unconstrained_strings(schema) == []


def test_the_free_text_walk_finds_a_free_string_wherever_it_hides():
    """The check above can fail: a free string at the top, in a list, in a nested model, beside a
    null, and an allow-listed name in the wrong model are all found."""
    from pydantic import BaseModel

    class Note(BaseModel):
        words: str

    class Leaky(BaseModel):
        reason: str
        tags: list[str]
        note: Note
        maybe: str | None
        name: str
        code: str = pydantic_field(pattern="^[a-z]+$")

    assert sorted(unconstrained_strings(Leaky.model_json_schema())) == [
        "Leaky.maybe",
        "Leaky.name",
        "Leaky.reason",
        "Leaky.tags",
        "Note.words",
    ]


def pydantic_field(**kw):
    from pydantic import Field

    return Field(**kw)


def test_the_reason_codes_guide_lists_every_code():
    """docs/guide/reason-codes.md is where staff and integrators look the codes up: it must not drift."""
    from schemas import vocabulary as v

    guide = (SCHEMAS.parent / "docs" / "guide" / "reason-codes.md").read_text()
    for vocabulary in (
        v.CancelReason,
        v.HandBackReason,
        v.ExceptionDecisionReason,
        v.UnplacedReason,
        v.ReopenReason,
        v.ChangeWithdrawnBecause,
        v.NotificationFailure,
        v.DeclineReason,
    ):
        assert f"### {vocabulary.__name__}" in guide or f"**{vocabulary.__name__}**" in guide
        for code in vocabulary:
            assert f"| `{code.value}` |" in guide, (vocabulary.__name__, code.value)
        assert all(code in v.REASON_WORDS for code in vocabulary), vocabulary.__name__
