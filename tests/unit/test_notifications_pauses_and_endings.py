"""Who is told of a pause, a resume and an ending, in which words (decision record 0078)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest

from schemas.events import PackageEnded, PackagePaused, PackageResumed
from services.notifications import domain
from services.notifications.templates import Templates

NOW = dt.datetime(2026, 11, 23, 10, tzinfo=dt.UTC)
NAMES = {"oak-care": "Oak Home Care"}


def events(package_id: uuid.UUID) -> dict[str, PackageEnded | PackagePaused | PackageResumed]:
    common = dict(correlation_id=package_id, package_id=package_id, provider_id="oak-care", hours_per_week=Decimal(7))
    return {
        "ended": PackageEnded(
            **common,
            reason="died",
            effective_date=dt.date(2026, 11, 24),
            ended_by="broker.raj",
            requested_by="broker.sue",
            ended_at=NOW,
        ),
        "paused": PackagePaused(
            **common,
            reason="admitted_to_hospital",
            paused_on=dt.date(2026, 11, 22),
            hold_expires_at=NOW + dt.timedelta(days=14),
            paid_during_hold=False,
            paused_by="broker.raj",
            requested_by="broker.sue",
            paused_at=NOW,
        ),
        "resumed": PackageResumed(
            **common,
            paused_on=dt.date(2026, 11, 22),
            resumed_on=dt.date(2026, 11, 30),
            resumed_by="broker.raj",
            requested_by="broker.sue",
            resumed_at=NOW,
        ),
    }


@pytest.mark.parametrize("name", ["ended", "paused", "resumed"])
def test_the_provider_the_broker_and_the_family_are_each_told_once(name):
    package_id = uuid.uuid4()
    event = events(package_id)[name]
    told = [
        (m.message, m.role, m.recipient_id)
        for m in domain.messages_for(event, provider_names=NAMES, providers_url="https://p.example")
    ]
    assert told == [
        (f"{name}_provider", "provider", "oak-care"),
        (f"{name}_broker", "broker", "broker.sue"),
        (f"{name}_person", "person", str(package_id)),
    ]
    assert domain.MESSAGES[f"{name}_provider"].essential, "the provider must stand carers down or send them"
    for m in domain.messages_for(event, provider_names=NAMES, providers_url="https://p.example"):
        text = Templates().render(m.message, m.context)
        assert "{{" not in text.body and str(package_id) in text.body, m.message


def test_an_ending_by_the_hold_timer_tells_the_requesting_broker_and_words_the_reason():
    package_id = uuid.uuid4()
    event = events(package_id)["ended"].model_copy(
        update={"reason": "hospital_stay_exceeded_hold", "ended_by": "schedule"}
    )
    provider, broker, _person = domain.messages_for(event, provider_names=NAMES, providers_url="https://p.example")
    assert broker.recipient_id == "broker.sue"
    body = Templates().render(provider.message, provider.context).body
    assert "outlasted" in body and "hospital_stay_exceeded_hold" not in body
    assert "hold on a paused package ran out" in Templates().render(broker.message, broker.context).body


def test_a_family_told_of_a_death_is_not_given_a_reason_code_and_a_pause_says_whether_it_is_paid():
    package_id = uuid.uuid4()
    person = domain.messages_for(events(package_id)["ended"], provider_names=NAMES, providers_url="x")[2]
    text = Templates().render(person.message, person.context)
    assert "sorry for your loss" in text.body and "died" not in text.body
    provider = domain.messages_for(events(package_id)["paused"], provider_names=NAMES, providers_url="x")[0]
    assert "does not pay" in Templates().render(provider.message, provider.context).body
