"""The provider API's contract version, changelog and lists (decisions 0101, 0102), held to the code
and the published OpenAPI document:

- the changelog's newest version is the code's ``CONTRACT_VERSION`` and the document's ``info.version``;
- every ``/me`` operation's success response has a schema of its own (typed, not "any object");
- every ``/me`` list takes ``limit`` and ``cursor``, documents its ``Link`` header, says its order in
  its description, and is in the changelog page's table of orders.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from services.providers.api import CONTRACT_VERSION

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs/guide/api-changelog.md"
DOCUMENT = json.loads((ROOT / "docs/openapi/providers.json").read_text())


def me_operations() -> list[tuple[str, str, dict]]:
    return [
        (method.upper(), path, op)
        for path, items in DOCUMENT["paths"].items()
        if path == "/me" or path.startswith("/me/")
        for method, op in items.items()
        if method in ("get", "put", "post", "patch", "delete")
    ]


def success_schema(op: dict) -> dict:
    [status] = [s for s in op["responses"] if s.startswith("2")]
    return op["responses"][status]["content"]["application/json"]["schema"]


def test_the_changelogs_newest_version_is_the_codes_and_the_documents():
    versions = re.findall(r"^### (\d+\.\d+\.\d+)", PAGE.read_text(), re.M)
    assert versions and versions[0] == CONTRACT_VERSION == DOCUMENT["info"]["version"]
    assert versions == sorted(versions, key=lambda v: tuple(map(int, v.split("."))), reverse=True), "newest first"


def test_every_provider_api_response_is_typed():
    untyped = []
    for method, path, op in me_operations():
        schema = success_schema(op)
        target = schema.get("items", schema)
        if "$ref" not in target:
            untyped.append(f"{method} {path}")
    assert not untyped, f"responses without a schema of their own: {untyped}"


def test_every_provider_api_list_pages_by_cursor_in_a_documented_order():
    table = dict(re.findall(r"^\| `GET (/me[^`]*)` \| (.+) \|$", PAGE.read_text(), re.M))
    lists = [(path, op) for method, path, op in me_operations() if success_schema(op).get("type") == "array"]
    assert len(lists) >= 6
    for path, op in lists:
        names = {p["name"] for p in op.get("parameters", [])}
        assert {"limit", "cursor"} <= names, path
        [status] = [s for s in op["responses"] if s.startswith("2")]
        assert "Link" in op["responses"][status].get("headers", {}), path
        assert "first" in (op.get("description", "") + op["summary"]), f"{path}: its order is not described"
        assert path in table, f"{path} is not in the changelog page's table of orders"
    assert set(table) == {path for path, _ in lists}
