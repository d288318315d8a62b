"""Every response a service sends in any test matches its published document (issue 20).

An autouse fixture (``tests/conftest.py``) watches every HTTP exchange the tests make with httpx,
in-process (ASGI) or with services in their own processes. After each test, each response from an
operation of a published OpenAPI document (``docs/openapi/<service>.json``) is checked:

- its status is one the operation declares;
- an error (4xx, 5xx) is ``application/problem+json`` and its body is a ``Problem`` (RFC 9457:
  type, title, status, detail and a code the document's ``Problem.code`` lists), with ``type`` and
  ``status`` agreeing with the code and the response;
- a success declared with a JSON body is JSON.

A response that does not is a failure of the test that caused it, naming the operation, the status
and what is wrong. Pages (``text/html``, the console's) and paths no document has (the identity
provider, webhook stand-ins) are not checked.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import httpx

DOCS = Path(__file__).resolve().parents[1] / "docs" / "openapi"
METHODS = {"get", "put", "post", "delete", "patch"}


@dataclass(frozen=True)
class Operation:
    service: str
    method: str
    template: str
    pattern: re.Pattern[str]
    responses: dict[str, Any]


@cache
def operations() -> tuple[Operation, ...]:
    found = []
    for path in sorted(DOCS.glob("*.json")):
        document = json.loads(path.read_text())
        for template, items in document.get("paths", {}).items():
            pattern = re.compile("^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(template)) + "$")
            for method, operation in items.items():
                if method in METHODS:
                    found.append(
                        Operation(path.stem, method.upper(), template, pattern, operation.get("responses", {}))
                    )
    # The most specific template first: /packages/search before /packages/{package_id}.
    return tuple(sorted(found, key=lambda o: (o.template.count("{"), -len(o.template))))


@cache
def problem_codes() -> frozenset[str]:
    codes: set[str] = set()
    for path in DOCS.glob("*.json"):
        schema = json.loads(path.read_text()).get("components", {}).get("schemas", {}).get("Problem", {})
        description = schema.get("properties", {}).get("code", {}).get("description", "")
        codes |= {c.strip() for c in description.split("one of", 1)[-1].split(",") if c.strip()}
    return frozenset(codes)


def operation_of(method: str, path: str) -> Operation | None:
    for op in operations():
        if op.method == method and op.pattern.match(path):
            return op
    return None


BRACKETED = re.compile(r"\[\d+\]")


def problems_with(method: str, path: str, response: httpx.Response) -> list[str]:
    """What is wrong with ``response`` against the document (empty: nothing)."""
    op = operation_of(method, path)
    if op is None:
        return []
    ctype = response.headers.get("content-type", "").split(";")[0].strip()
    if ctype == "text/html":
        return []
    where = f"{op.service}: {method} {op.template} -> {response.status_code}"
    status = str(response.status_code)
    wrong = []
    if status not in op.responses and "default" not in op.responses:
        wrong.append(f"{where}: status not in the document (it lists {', '.join(sorted(op.responses))})")
    if response.status_code >= 400:
        if ctype != "application/problem+json":
            wrong.append(f"{where}: an error as {ctype or 'no content type'}, not application/problem+json")
        else:
            wrong += [f"{where}: {w}" for w in _problem_errors(response)]
    return wrong


def _problem_errors(response: httpx.Response) -> list[str]:
    try:
        body = response.json()
    except ValueError:
        return ["the problem body is not JSON"]
    if not isinstance(body, dict):
        return ["the problem body is not an object"]
    missing = [k for k in ("type", "title", "status", "detail", "code") if k not in body]
    if missing:
        return [f"the problem has no {', '.join(missing)}"]
    wrong = []
    if body["code"] not in problem_codes():
        wrong.append(f"code {body['code']!r} is not one the document lists")
    if body["type"] != f"urn:homecare:problem:{body['code']}":
        wrong.append(f"type {body['type']!r} does not name code {body['code']!r}")
    if body["status"] != response.status_code:
        wrong.append(f"status {body['status']} in the body, {response.status_code} on the response")
    # Field paths are dotted, list positions included ("periods.0.shares"), as validation gives
    # them: one style whichever layer refused the request.
    for error in body.get("errors") or []:
        if isinstance(error, dict) and BRACKETED.search(str(error.get("field", ""))):
            wrong.append(f"field {error['field']!r} is not a dotted path (periods.0.shares, not periods[0].shares)")
    return wrong


@dataclass
class Recorder:
    """The exchanges of the current test, checked at its end."""

    seen: list[tuple[str, str, httpx.Response]] = field(default_factory=list)

    def record(self, response: httpx.Response) -> None:
        request = response.request
        self.seen.append((request.method, request.url.path, response))

    def failures(self) -> list[str]:
        out: list[str] = []
        for method, path, response in self.seen:
            if not response.is_closed:
                continue  # a stream the test did not read: nothing to check
            out += problems_with(method, path, response)
        return sorted(set(out))
