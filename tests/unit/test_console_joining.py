"""The console's pages for joining the framework (issue 21): who sees them, the form's answers as
the providers API's application, and the API's refusals back next to the questions."""

from __future__ import annotations

from services.console import domain
from services.console.api.pages import navigation
from services.console.clients import API_ROLE
from services.console.domain import Permission, Role


def test_the_contracts_and_quality_team_signs_in_to_the_applications_and_nobody_else_sees_them():
    assert domain.role_from_idp(["contracts_quality"]) == Role.contracts_quality
    assert domain.HOME[Role.contracts_quality] == "/applications"
    assert API_ROLE["contracts_quality"] == "contracts_quality"  # what the console says it acts as
    assert domain.can("contracts_quality", Permission.applications)
    assert not domain.can("contracts_quality", Permission.person) and not domain.can(
        "contracts_quality", Permission.act
    )
    for role in Role:
        assert domain.can(role, Permission.applications) == (role is Role.contracts_quality)


def test_the_menu_links_the_applications_for_the_team():
    class Staff:
        kind = "staff"

        def can(self, permission: Permission) -> bool:
            return domain.can("contracts_quality", permission)

    menu = navigation(Staff(), "/applications")  # type: ignore[arg-type]
    assert [(i["href"], i["current"]) for i in menu] == [
        ("/applications", True),
        # The quality and risk register's pages (decision 0103) and the market reports (0105).
        ("/quality", False),
        ("/quality/import", False),
        ("/quality/reports", False),
    ]


def test_the_form_becomes_the_apis_application():
    body = domain.application_body(
        {
            "provider_id": " Oakfield-Care ",
            "name": "Oakfield",
            "zones": "bottesford",  # one box ticked: a string
            "bands": ["urban", "rural"],
            "skills": ["personal_care", "mobility"],
            "double_handed": "yes",
            "weekly_capacity_hours": "120",
            "cqc_location_id": "1-123456789",
            "cqc_rating": "good",
            "adapter_kind": "webhook",
            "webhook_url": " https://oakfield.example/offers ",
            "tender_reference": "LCC-1",
            "received_on-day": "8",
            "received_on-month": "9",
            "received_on-year": "2026",
        }
    )
    assert body["provider_id"] == "oakfield-care" and body["zones"] == ["bottesford"]
    assert body["bands"] == ["urban", "rural"] and body["double_handed"] is True
    assert body["adapter"] == {"kind": "webhook", "webhook_url": "https://oakfield.example/offers"}
    assert body["received_on"] == "2026-09-08"
    assert domain.application_body({})["received_on"] == ""  # the API names the missing date


def test_the_apis_refusals_go_next_to_their_questions_and_a_checklist_item_on_top():
    errors, general = domain.application_errors(
        {
            "detail": "...",
            "errors": [
                {"field": "zones.1", "detail": "no zone 'atlantis' in the framework"},
                {"field": "adapter.webhook_url", "detail": "not an allowed destination"},
                {"field": "received_on", "detail": "outside the framework's re-opening windows"},
            ],
        }
    )
    assert errors == {
        "zones": "no zone 'atlantis' in the framework",
        "webhook_url": "not an allowed destination",
        "received_on": "outside the framework's re-opening windows",
    }
    assert general == []
    errors, general = domain.application_errors(
        {"errors": [{"field": "checklist.insurance", "detail": "insurance is missing"}]}
    )
    assert (errors, general) == ({}, ["insurance is missing"])
    assert domain.application_errors({"detail": "application already approved"}) == (
        {},
        ["application already approved"],
    )
