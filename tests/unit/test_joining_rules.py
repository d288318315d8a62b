"""Joining the framework: the due-diligence checklist's rules and the re-opening windows
(services/providers/domain.py, services/runtime/reference.py; decision records 0113, 0114)."""

from __future__ import annotations

import datetime as dt

import pytest

from services.providers import domain
from services.runtime.reference import load_joining, parse_joining

TERMS = parse_joining(
    {
        "version": "test",
        "reopening_windows": [
            {"id": "spring", "opens_on": dt.date(2024, 3, 4), "closes_on": dt.date(2024, 4, 12)},
            {"id": "autumn", "opens_on": dt.date(2024, 9, 2), "closes_on": dt.date(2024, 10, 11)},
        ],
        "due_diligence": [
            {"id": "cqc_registration", "title": "CQC registration"},
            {"id": "insurance", "title": "Insurance"},
            {"id": "references", "title": "References"},
        ],
    }
)
TODAY = dt.date(2024, 11, 1)


def refusal(call) -> domain.JoiningRefused:
    with pytest.raises(domain.JoiningRefused) as caught:
        call()
    return caught.value


def test_an_approval_needs_every_item_passed():
    domain.check_approval(TERMS, {"cqc_registration": "passed", "insurance": "passed", "references": "passed"}, "good")


def test_an_approval_with_an_item_missing_names_it():
    refused = refusal(
        lambda: domain.check_approval(TERMS, {"cqc_registration": "passed", "references": "passed"}, "good")
    )
    assert (refused.status, refused.code, refused.field) == (422, "checklist-incomplete", "checklist.insurance")
    assert "insurance is missing" in str(refused)


def test_an_approval_with_an_item_failed_names_the_first_in_the_checklists_order_and_lists_all():
    latest: dict[str, domain.CheckOutcome] = {
        "cqc_registration": "passed",
        "insurance": "failed",
        "references": "failed",
    }
    refused = refusal(lambda: domain.check_approval(TERMS, latest, "good"))
    assert refused.field == "checklist.insurance"
    assert "insurance is failed" in str(refused) and "references is failed" in str(refused)


def test_the_latest_check_counts_and_an_item_no_longer_configured_neither_helps_nor_blocks():
    state = domain.checklist_state(TERMS, {"insurance": "failed", "retired_item": "failed"})
    assert state == {"cqc_registration": "missing", "insurance": "failed", "references": "missing"}
    domain.check_approval(
        TERMS,
        {"cqc_registration": "passed", "insurance": "passed", "references": "passed", "retired_item": "failed"},
        "good",
    )


def test_a_provider_rated_inadequate_cannot_be_approved_even_with_the_checklist_complete():
    passed: dict[str, domain.CheckOutcome] = dict.fromkeys(TERMS.item_ids(), "passed")
    refused = refusal(lambda: domain.check_approval(TERMS, passed, "inadequate"))
    assert (refused.status, refused.field) == (422, "cqc_rating")
    domain.check_approval(TERMS, passed, "not_yet_rated")  # a new service the CQC has not inspected yet may join


def test_a_check_must_be_of_a_configured_item_reviewed_between_receipt_and_today():
    received = dt.date(2024, 9, 10)
    domain.check_review(TERMS, "insurance", TODAY, received, TODAY)
    assert refusal(lambda: domain.check_review(TERMS, "dbs", TODAY, received, TODAY)).field == "item"
    later = refusal(lambda: domain.check_review(TERMS, "insurance", TODAY + dt.timedelta(days=1), received, TODAY))
    assert (later.field, later.code) == ("reviewed_on", "invalid-date")
    early = refusal(lambda: domain.check_review(TERMS, "insurance", dt.date(2024, 9, 9), received, TODAY))
    assert early.field == "reviewed_on"


@pytest.mark.parametrize("day", [dt.date(2024, 3, 4), dt.date(2024, 4, 12), dt.date(2024, 9, 20)])
def test_an_application_received_in_a_window_is_in_that_window_both_ends_included(day):
    assert domain.window_for(TERMS, day, TODAY).contains(day)


def test_an_application_received_between_windows_is_refused_naming_the_windows_either_side():
    refused = refusal(lambda: domain.window_for(TERMS, dt.date(2024, 6, 1), TODAY))
    assert (refused.status, refused.code, refused.field) == (422, "outside-window", "received_on")
    assert "spring" in str(refused) and "autumn" in str(refused)
    before_all = refusal(lambda: domain.window_for(TERMS, dt.date(2023, 1, 1), TODAY))
    assert "next, spring" in str(before_all)


def test_an_application_cannot_be_received_after_today():
    refused = refusal(lambda: domain.window_for(TERMS, dt.date(2024, 9, 20), dt.date(2024, 9, 19)))
    assert (refused.field, refused.code) == ("received_on", "invalid-date")


def test_unknown_zones_are_named_with_their_position():
    domain.unknown_zones(["melton", "bottesford"], {"melton", "bottesford"})
    refused = refusal(lambda: domain.unknown_zones(["melton", "atlantis"], {"melton"}))
    assert (refused.field, refused.code) == ("zones.1", "unknown-zone")


def test_decided_applications_take_no_more_checks_or_decisions():
    domain.check_undecided("a", "received")
    assert refusal(lambda: domain.check_undecided("a", "approved")).status == 409


def test_an_approved_application_joins_as_an_active_supplementary_provider_with_nothing_committed():
    entry = domain.joining_entry(
        {
            "provider_id": "oakfield-care",
            "name": "Oakfield",
            "zones": ["bottesford"],
            "bands": ["urban"],
            "skills": ["mobility"],
            "double_handed": False,
            "cqc_rating": "not_yet_rated",
            "weekly_capacity_hours": 120,
            "adapter": {"kind": "portal"},
        }
    )
    assert (entry["status"], entry["tier"], entry["committed_hours"], entry["hand_backs_12m"]) == (
        "active",
        "supplementary",
        0,
        0,
    )
    assert entry["adapter"] == {"kind": "portal"}


@pytest.mark.parametrize(
    "windows",
    [
        [{"id": "a", "opens_on": dt.date(2024, 3, 1), "closes_on": dt.date(2024, 2, 1)}],
        [
            {"id": "a", "opens_on": dt.date(2024, 3, 1), "closes_on": dt.date(2024, 4, 1)},
            {"id": "b", "opens_on": dt.date(2024, 4, 1), "closes_on": dt.date(2024, 5, 1)},
        ],
    ],
)
def test_windows_that_end_before_they_open_or_overlap_are_refused(windows):
    with pytest.raises(ValueError):
        parse_joining({"version": "x", "reopening_windows": windows, "due_diligence": [{"id": "a", "title": "A"}]})


def test_a_checklist_must_name_each_item_once():
    with pytest.raises(ValueError):
        parse_joining({"version": "x", "due_diligence": [{"id": "a", "title": "A"}, {"id": "a", "title": "B"}]})


def test_the_shipped_terms_name_the_councils_checks():
    terms = load_joining()
    assert {"cqc_registration", "insurance", "policies", "references"} <= set(terms.item_ids())
    assert terms.windows
