"""Safeguarding concerns' rules (decision records 0106-0108), with no I/O: a concern needs a subject;
only an open concern about a provider pauses its new offers, once; an outcome closes a concern once;
a provider stays paused while any open concern holds a pause; a paused provider is offered nothing
new and the decision record says only that the council paused its offers; the vocabularies are codes
and events carry the pause without why."""

import json
import uuid
from decimal import Decimal

import pytest

from schemas.events import ProviderProfile, ProviderUpdated, parse_event
from services.brokerage import domain as brokerage
from services.providers import domain
from tests.unit.test_brokerage_domain import package, provider


def test_a_concern_without_a_subject_is_refused_naming_the_subject():
    refusal = domain.subject_refusal(None, None)
    assert refusal is not None
    assert (refusal.status, refusal.field) == (422, "subject")
    assert "subject" in refusal.message
    assert domain.subject_refusal(None, "") is not None  # an empty provider id is no subject either


@pytest.mark.parametrize(
    ("package_id", "provider_id"), [(uuid.uuid4(), None), (None, "bluebell-care"), (uuid.uuid4(), "bluebell-care")]
)
def test_a_package_a_provider_or_both_is_a_subject(package_id, provider_id):
    assert domain.subject_refusal(package_id, provider_id) is None


def test_only_an_open_concern_about_a_provider_pauses_its_offers_and_only_once():
    assert domain.pause_refusal(status="open", provider_id="bluebell-care", paused=False) is None
    closed = domain.pause_refusal(status="closed", provider_id="bluebell-care", paused=False)
    package_only = domain.pause_refusal(status="open", provider_id=None, paused=False)
    again = domain.pause_refusal(status="open", provider_id="bluebell-care", paused=True)
    assert closed is not None and (closed.status, closed.code) == (409, "concern-closed")
    assert package_only is not None and package_only.code == "concern-not-about-a-provider"
    assert again is not None and again.code == "offers-already-paused"


def test_an_outcome_closes_a_concern_once():
    assert domain.outcome_refusal(status="open") is None
    refused = domain.outcome_refusal(status="closed")
    assert refused is not None and (refused.status, refused.code) == (409, "concern-closed")


def test_a_provider_stays_paused_while_any_open_concern_holds_a_pause():
    assert domain.offers_paused_after(2) is True  # one enquiry's outcome leaves the other's pause
    assert domain.offers_paused_after(1) is True
    assert domain.offers_paused_after(0) is False


def test_a_paused_provider_is_offered_no_new_package_and_the_record_does_not_say_why():
    spec = package()
    paused = provider("p1", offers_paused=True)
    other = provider("p2")
    screening = brokerage.screen(spec, [paused, other])
    assert [p.provider_id for p in screening.eligible] == ["p2"]
    assert screening.excluded == {"p1": [brokerage.OFFERS_PAUSED]}
    assert "safeguard" not in brokerage.OFFERS_PAUSED.lower() and "concern" not in brokerage.OFFERS_PAUSED.lower()
    # A bid it made before the pause cannot win it either: eligibility is checked again at the award.
    assert brokerage.eligible_now(spec, [paused, other], frozenset()) == {"p2"}
    # The pause lifted, it is eligible again.
    assert brokerage.screen(spec, [provider("p1"), other]).excluded == {}


def test_a_paused_provider_keeps_no_other_exclusion_hidden():
    paused_and_suspended = provider("p1", offers_paused=True, status="suspended")
    reasons = brokerage.standing_exclusions(package(), paused_and_suspended)
    assert reasons[:2] == ["not active on the framework (suspended)", brokerage.OFFERS_PAUSED]


def test_the_vocabularies_are_codes_from_the_papers():
    assert {c.value for c in domain.ConcernCategory} >= {"neglect", "psychological", "organisational"}
    assert {o.value for o in domain.ConcernOutcome} >= {"threshold_not_met", "transferred_to_locality"}
    for vocabulary in (domain.ConcernCategory, domain.OfferPauseReason, domain.ConcernOutcome):
        assert all(v.value.replace("_", "").isalpha() and v.value.islower() for v in vocabulary)
    assert domain.concern_reference(42) == "SG-000042"


def test_provider_updated_carries_the_pause_and_v1_upgrades_to_not_paused():
    """The pause is on ProviderUpdated since v2 (decision 0107; v3 added hand-back dates, 0119)."""
    profile = provider("bluebell-care", offers_paused=True)
    event = ProviderUpdated(correlation_id=uuid.uuid4(), revision=3, profile=profile)
    sent = json.loads(event.model_dump_json())
    assert sent["schema_version"] >= 2 and sent["profile"]["offers_paused"] is True
    # No words of a concern, no reason: the profile's fields are the registry's, nothing else.
    assert set(sent["profile"]) == set(ProviderProfile.model_fields)
    newer = ("offers_paused", "hand_back_dates")  # fields a v1 profile did not have
    v1 = sent | {"schema_version": 1, "profile": {k: v for k, v in sent["profile"].items() if k not in newer}}
    upgraded = parse_event(json.dumps(v1))
    assert isinstance(upgraded, ProviderUpdated) and upgraded.profile.offers_paused is False
    assert upgraded.profile.weekly_capacity_hours == Decimal(100)
