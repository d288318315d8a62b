"""Every input every API takes is bounded in its published document (docs/openapi/*.json), so
that what a request can carry is what the database can store (decision 0129):

- a string has ``maxLength``, an enum, a format (uuid, date...) or a pattern that bounds its length;
- a date or a time has ``formatMinimum`` and ``formatMaximum``: the platform's calendar
  (services/runtime/fields.py ``Day``, ``Moment``);
- an integer and a number have a minimum and a maximum (no value out of a column's range);
- a list has ``maxItems``; a list of codes or names (zones, bands, skills, needs, channels) is a
  set: ``uniqueItems`` (services/runtime/fields.py ``Distinct``: a repeat is a 422);
- a request body whose fields are all optional is optional itself (no body is the same as ``{}``).

The documents are generated from the request models, so this test walks every route of every
service at once: a new field without its bound fails here, before an attacker finds it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs" / "openapi"
BOUNDED_FORMATS = {"uuid", "date", "date-time", "time", "binary"}
# A day typed into the platform is inside its calendar (runtime.clock.EARLIEST_DAY - LATEST_DAY):
# 0001-01-01 or 9999-12-31 is a 422 at the edge, never stored nor an overflow's 500 in a rule.
CALENDAR_FORMATS = {"date", "date-time"}
# Lists where a member may rightly appear twice: none yet. Each entry says why.
REPEATS_ALLOWED: dict[str, str] = {}


def _resolve(document: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def bounded_pattern(pattern: str | None) -> bool:
    """An anchored pattern with no unbounded repeat (``*``, ``+``, ``{n,}``) outside a character class."""
    if not pattern or not (pattern.startswith("^") and pattern.endswith("$")):
        return False
    outside_classes = re.sub(r"\[(?:\\.|[^\]\\])*\]", "C", pattern.replace(r"\\", ""))
    return not re.search(r"(?<!\\)[*+]|\{\d+,\}", outside_classes)


def _scalar(document: dict, schema: dict) -> bool:
    schema = _resolve(document, schema)
    return schema.get("type") in ("string", "integer") or "enum" in schema


def faults(document: dict, schema: dict, where: str) -> Iterator[str]:
    """What is unbounded in ``schema`` (an input), each as ``where: what``."""
    schema = _resolve(document, schema)
    branches = schema.get("anyOf") or schema.get("oneOf") or []
    # A Decimal is "a number or a string of one": the string is held to the number's bounds.
    numeric = any(b.get("type") == "number" for b in branches)
    for branch in branches + schema.get("allOf", []):
        if numeric and branch.get("type") == "string":
            continue
        yield from faults(document, branch, where)
    kind = schema.get("type")
    if kind == "string":
        if not (
            "maxLength" in schema
            or "enum" in schema
            or "const" in schema
            or schema.get("format") in BOUNDED_FORMATS
            or bounded_pattern(schema.get("pattern"))
        ):
            yield f"{where}: a string without maxLength"
        if schema.get("format") in CALENDAR_FORMATS and not {"formatMinimum", "formatMaximum"} <= schema.keys():
            yield f"{where}: a {schema['format']} without formatMinimum and formatMaximum (use runtime.fields.Day)"
    elif kind in ("integer", "number"):
        if not ({"minimum", "exclusiveMinimum"} & schema.keys() and {"maximum", "exclusiveMaximum"} & schema.keys()):
            yield f"{where}: a {kind} without a minimum and a maximum"
    elif kind == "array":
        if "maxItems" not in schema:
            yield f"{where}: a list without maxItems"
        items = schema.get("items", {})
        if _scalar(document, items) and not schema.get("uniqueItems") and where not in REPEATS_ALLOWED:
            yield f"{where}: a list of codes that may repeat a member (use runtime.fields.Distinct)"
        yield from faults(document, items, f"{where}[]")
    elif kind == "object" or "properties" in schema:
        for name, member in schema.get("properties", {}).items():
            yield from faults(document, member, f"{where}.{name}")
        if isinstance(schema.get("additionalProperties"), dict):
            yield from faults(document, schema["additionalProperties"], f"{where}.*")


def operations() -> Iterator[tuple[str, str, str, dict, dict]]:
    for path in sorted(DOCS.glob("*.json")):
        document = json.loads(path.read_text())
        for template, items in document["paths"].items():
            for method, operation in items.items():
                yield path.stem, method.upper(), template, operation, document


def every_fault() -> list[str]:
    found: list[str] = []
    for service, method, template, operation, document in operations():
        name = f"{service} {method} {template}"
        for parameter in operation.get("parameters", []):
            found += faults(document, parameter.get("schema", {}), f"{name} {parameter['in']}:{parameter['name']}")
        body = operation.get("requestBody")
        if body and "application/json" in body["content"]:
            schema = body["content"]["application/json"].get("schema", {})
            found += faults(document, schema, f"{name} body")
            resolved = _resolve(document, schema)
            if body.get("required") and resolved.get("properties") and not resolved.get("required"):
                found.append(f"{name}: every field of the body is optional, but the body is required")
    return found


def test_every_input_of_every_api_is_bounded():
    found = every_fault()
    assert not found, f"{len(found)} unbounded inputs:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("pattern", "bounded"),
    [
        (r"^[a-z0-9][a-z0-9-]{1,63}$", True),
        (r"^1-[0-9]{6,12}$", True),
        (r"^[^/\x00\s][^/\x00]{0,99}$", True),
        (r"^(a|b)(,(a|b))*$", False),
        (r"^[a-z]+$", False),
        (r"^[a-z]{2,}$", False),
        (r"[a-z]{2}", False),
    ],
)
def test_a_pattern_bounds_a_string_only_when_anchored_without_open_repeats(pattern, bounded):
    assert bounded_pattern(pattern) is bounded


def test_the_walk_finds_each_kind_of_unbounded_input():
    document: dict[str, Any] = {"components": {"schemas": {"Band": {"enum": ["urban"], "type": "string"}}}}
    schema = {
        "properties": {
            "words": {"type": "string"},
            "hours": {"type": "number", "minimum": 0},
            "rate": {"anyOf": [{"type": "number", "minimum": 0, "maximum": 99}, {"type": "string"}]},
            "bands": {"type": "array", "items": {"$ref": "#/components/schemas/Band"}, "maxItems": 4},
        }
    }
    assert sorted(faults(document, schema, "b")) == [
        "b.bands: a list of codes that may repeat a member (use runtime.fields.Distinct)",
        "b.hours: a number without a minimum and a maximum",
        "b.words: a string without maxLength",
    ]
