"""The permission table covers every operation of every service, and names only real ones: built
from the apps' own OpenAPI documents, so a new route cannot be added without a decision on who may
call it. (tests/e2e/test_authorization.py calls them all against the running services.)"""

import importlib

import pytest

from services.runtime import permissions
from services.runtime.settings import SERVICES, load


def documented(service: str) -> set[tuple[str, str]]:
    _, app = importlib.import_module(f"services.{service}.app").build(load(service))  # type: ignore[arg-type]  # a name of SERVICES
    return {(m.upper(), path) for path, methods in app.openapi()["paths"].items() for m in methods}


@pytest.mark.parametrize("service", SERVICES)
def test_every_operation_has_a_rule_and_every_rule_an_operation(service):
    operations = documented(service)
    assert not {op for op in operations if permissions.rule_for(service, *op) is None}
    assert not set(permissions.TABLE[service]) - operations, "rules for operations that no longer exist"


def test_an_operation_not_in_the_table_is_refused_to_every_role():
    everyone = frozenset({*permissions.STAFF_ROLES, "service", "service:console", "service:providers"})
    assert not permissions.allowed("brokerage", "DELETE", "/packages/{package_id}", everyone)
    assert permissions.allowed("brokerage", "GET", "/packages/{package_id}", frozenset({"operations"}))
    assert not permissions.allowed("brokerage", "GET", "/packages/{package_id}/person", frozenset({"operations"}))


@pytest.mark.parametrize("service", SERVICES)
def test_the_openapi_document_declares_the_schemes_and_the_roles(service):
    _, app = importlib.import_module(f"services.{service}.app").build(load(service))
    document = app.openapi()
    assert "oidc" in document["components"]["securitySchemes"]
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            rule = permissions.rule_for(service, method.upper(), path)
            if rule is permissions.PUBLIC:
                assert operation["security"] == []
            elif rule is permissions.INTERNAL:
                assert operation["security"] == [{"oidc": []}] and operation["x-roles"] == ["any"]
            elif rule is not permissions.PROVIDER_CREDENTIAL:
                assert operation["security"] == [{"oidc": []}] and operation["x-roles"] == sorted(rule or ())


def test_the_documented_table_is_the_permission_table():
    """docs/security.md shows the table as role x operation for people to read: it says what the
    code enforces, row for row (the provider API's ``/me`` and the operations endpoints aside)."""
    from pathlib import Path

    columns = (*permissions.STAFF_ROLES, "service:providers", permissions.CONSOLE)
    text = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    shown: dict[tuple[str, str, str], frozenset[str]] = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 2 + len(columns) and cells[0] in permissions.TABLE and cells[1].startswith("`"):
            method, path = cells[1].strip("`").split(" ", 1)
            shown[(cells[0], method, path)] = frozenset(
                role for role, cell in zip(columns, cells[2:], strict=True) if cell == "✓"
            )
    enforced = {
        (service, method, path): rule
        for service, rules in permissions.TABLE.items()
        for (method, path), rule in rules.items()
        if rule is not permissions.PROVIDER_CREDENTIAL
    }
    assert shown == enforced
