"""The notifications service's handlers and dispatcher on the in-memory broker, with a real
PostgreSQL and real channel servers (SMTP by aiosmtpd, a GOV.UK Notify stand-in, a webhook
receiver) on loopback ports."""

import asyncio
import datetime as dt
import json
import uuid
from decimal import Decimal

import httpx
import pytest

from schemas.events import (
    OfferMade,
    PackageEnded,
    PackagePaused,
    PackagePlaced,
    PackageResumed,
    PackageSpec,
    PackageUnplaced,
    VisitPattern,
)
from services.notifications import handlers
from services.notifications import repository as repo
from services.notifications.app import build
from services.runtime import topics
from services.runtime.outbox import unit_of_work
from tests import local_issuer
from tests.standins import MailServer, NotifyStandIn, WebhookReceiver, self_signed_certificate, serving


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def placed(provider_id: str, broker: str, losers=()) -> PackagePlaced:
    package_id = uuid.uuid4()
    return PackagePlaced(
        correlation_id=package_id,
        package_id=package_id,
        provider_id=provider_id,
        offer_round=1,
        tier="prime",
        hourly_rate=Decimal("18.75"),
        hours_per_week=Decimal("7"),
        start_date=dt.date(2026, 12, 7),
        zone="melton",
        band="urban",
        urgency="community",
        rate_card="2026-27",
        requested_by=broker,
        losing_provider_ids=list(losers),
        placed_at=dt.datetime.now(dt.UTC),
    )


@pytest.fixture
async def notifications(in_memory):
    """Start the notifications service in-process with these settings; returns (service, broker, http client)."""
    clients = []

    async def start(**settings):
        defaults = dict(
            delivery_backoff_initial_seconds=0.01,
            delivery_backoff_max_seconds=0.02,
            smtp_security="none",
            smtp_timeout_seconds=3,
        )

        apps = []

        def configured_build(base):
            service, app = build(base.model_copy(update=defaults | settings))
            apps.append(app)
            return service, app

        service, broker = await in_memory(configured_build, "notifications")
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=apps[0]),
            base_url="http://notifications",
            # The council's administrator: every kind of contact is theirs to set (CONTACT_WRITERS).
            headers=local_issuer.headers("notifications", "demo-admin", ("council_admin",)),
        )
        clients.append(client)
        return service, broker, client

    yield start
    for client in clients:
        await client.aclose()


async def publish(broker, event) -> None:
    await broker.publish(event.model_dump_json().encode(), topic=topics.resolve("brokerage.packages"))


async def register(client, kind, recipient_id, **body) -> dict:
    response = await client.put(f"/recipients/{kind}/{recipient_id}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def placed_for_provider_by_email(client, broker, address="{provider}@example.org"):
    """A placement whose provider is told by email (at ``address``) and whose broker by the log."""
    provider, broker_id = unique("prov"), unique("broker")
    await register(client, "provider", provider, email=address.format(provider=provider), channels=["email"])
    await register(client, "broker", broker_id, channels=["log"])
    event = placed(provider, broker_id)
    await publish(broker, event)
    return provider, broker_id, event


async def dispatch_all(service, rounds: int = 1) -> None:
    for _ in range(rounds):
        await handlers.dispatch_due(service.pool, service.rules, service.channels)


async def statuses(client, package_id) -> dict:
    rows = (await client.get(f"/packages/{package_id}/notifications")).json()
    return {(r["recipient_role"], r["recipient_id"], r["channel"]): r for r in rows}


async def failures(service, package_id) -> list[dict]:
    rows = await service.pool.fetch(
        "SELECT payload::text AS p FROM outbox WHERE type = 'NotificationFailed' AND aggregateid = $1", str(package_id)
    )
    return [json.loads(r["p"]) for r in rows]


async def test_a_redelivered_placement_sends_one_message_per_recipient_and_channel(notifications):
    mail = MailServer().start()
    try:
        service, broker, client = await notifications(smtp_host="127.0.0.1", smtp_port=mail.port)
        provider, loser, broker_id = unique("prov"), unique("loser"), unique("broker")
        await register(
            client, "provider", provider, name="Oak Care", email=f"{provider}@example.org", channels=["email", "log"]
        )
        await register(client, "provider", loser, email=f"{loser}@example.org", channels=["email"])
        await register(client, "broker", broker_id, email=f"{broker_id}@example.org", channels=["email"])
        event = placed(provider, broker_id, losers=[loser])
        await register(
            client,
            "person",
            str(event.package_id),
            email=f"family-{event.package_id}@example.org",
            channels=["email"],
            large_print=True,
        )
        for _ in range(3):
            await publish(broker, event)
        await dispatch_all(service, rounds=3)
        await publish(broker, event)  # after sending, too
        await dispatch_all(service)
        rows = await statuses(client, event.package_id)
        assert {k: r["status"] for k, r in rows.items()} == {
            ("provider", provider, "email"): "sent",
            ("provider", provider, "log"): "sent",
            ("broker", broker_id, "email"): "sent",
            ("person", str(event.package_id), "email"): "sent",
            ("losing_bidder", loser, "email"): "sent",
        }
        for address in (
            f"{provider}@example.org",
            f"{loser}@example.org",
            f"{broker_id}@example.org",
            f"family-{event.package_id}@example.org",
        ):
            assert len(mail.to(address)) == 1, address
        [family] = mail.to(f"family-{event.package_id}@example.org")
        assert family["Subject"] == "Your home care starts on Monday 7 December 2026"
        assert "carers from Oak Care" in family.get_body(("plain",)).get_content()
        assert "font-size: 24px" in family.get_body(("html",)).get_content(), "large print honoured"
        [award] = mail.to(f"{provider}@example.org")
        assert f"/packages/{event.package_id}/person" in award.get_body(("plain",)).get_content()
        confirmed = await service.pool.fetch(
            "SELECT payload::text AS p FROM outbox WHERE type = 'PlacementConfirmed' AND aggregateid = $1",
            str(event.package_id),
        )
        assert len(confirmed) == 1
        kinds = {(r["kind"], r["channel"]) for r in json.loads(confirmed[0]["p"])["recipients"]}
        assert kinds == {
            ("provider", "email"),
            ("provider", "log"),
            ("broker", "email"),
            ("person", "email"),
            ("losing_bidder", "email"),
        }
    finally:
        mail.stop()


async def test_mail_server_down_then_up_delivers_once_after_retries(notifications):
    mail = MailServer()  # its port is chosen, but nothing listens yet
    service, broker, client = await notifications(smtp_host="127.0.0.1", smtp_port=mail.port)
    provider, broker_id, event = await placed_for_provider_by_email(client, broker)
    for _ in range(3):
        await dispatch_all(service)
        await _make_due(service, event.package_id)
    row = (await statuses(client, event.package_id))[("provider", provider, "email")]
    assert row["status"] == "pending" and row["attempts"] == 3 and "unreachable" in row["reason"]
    assert (await statuses(client, event.package_id))[("broker", broker_id, "log")]["status"] == "sent", (
        "a channel failing does not hold up the others"
    )
    mail.start()
    try:
        await dispatch_all(service)
        await _make_due(service, event.package_id)
        await dispatch_all(service)
        row = (await statuses(client, event.package_id))[("provider", provider, "email")]
        assert row["status"] == "sent" and row["attempts"] == 4
        assert len(mail.to(f"{provider}@example.org")) == 1
        assert await failures(service, event.package_id) == []
    finally:
        mail.stop()


async def _make_due(service, package_id) -> None:
    """Skip the backoff's wait (the delay itself is unit-tested)."""
    await service.pool.execute(
        "UPDATE deliveries SET next_attempt_at = now() WHERE package_id = $1 AND status = 'pending'", package_id
    )


async def test_transient_failures_past_the_limit_fail_for_good(notifications):
    service, broker, client = await notifications(
        smtp_host="127.0.0.1", smtp_port=MailServer().port, delivery_max_attempts=2
    )
    provider = unique("prov")
    await register(client, "provider", provider, email=f"{provider}@example.org", channels=["email"])
    event = placed(provider, unique("broker"))
    await publish(broker, event)
    for _ in range(3):
        await dispatch_all(service)
        await _make_due(service, event.package_id)
    row = (await statuses(client, event.package_id))[("provider", provider, "email")]
    assert row["status"] == "failed" and row["reason"].startswith("gave up after 2 attempts: mail server unreachable")
    [failed] = [f for f in await failures(service, event.package_id) if f["channel"] == "email"]
    assert failed["attempts"] == 2 and failed["recipient_id"] == provider
    # Operations see it counted and listed (for the console's overview), with no address and no body.
    ops = local_issuer.headers("notifications", "demo-ops", ("operations",))
    answer = await client.get("/deliveries/failed", headers=ops)
    assert answer.status_code == 200, answer.text
    listed = [d for d in answer.json()["deliveries"] if d["package_id"] == str(event.package_id)]
    assert answer.json()["count"] >= 1 and [d["channel"] for d in listed] == ["email"]
    assert listed[0]["recipient_role"] == "provider" and f"{provider}@example.org" not in answer.text
    assert "body" not in listed[0] and "address" not in listed[0]
    broker = local_issuer.headers("notifications")
    assert (await client.get("/deliveries/failed", headers=broker)).status_code == 403, "not the brokerage team's"


async def test_a_refused_address_fails_permanently_with_notification_failed_and_no_address_in_it(notifications):
    mail = MailServer().start()
    try:
        service, broker, client = await notifications(smtp_host="127.0.0.1", smtp_port=mail.port)
        provider, _, event = await placed_for_provider_by_email(client, broker, "nobody-{provider}@example.org")
        await dispatch_all(service)
        await _make_due(service, event.package_id)
        await dispatch_all(service)
        row = (await statuses(client, event.package_id))[("provider", provider, "email")]
        assert row["status"] == "failed" and row["attempts"] == 1 and "550" in row["reason"]
        [failed] = await failures(service, event.package_id)
        assert failed["message"] == "placement_award" and failed["recipient_kind"] == "provider"
        # The event says why as a code; the server's words (which may quote the address) stay on the row.
        assert failed["channel"] == "email" and failed["reason"] == "address_refused"
        # Ids aside (a random UUID may hold "550"), nothing of the address or the server's words.
        words = json.dumps({k: v for k, v in failed.items() if not k.endswith("_id")})
        assert "nobody-" not in words and "550" not in words, "no address, no error text"
        assert mail.received == []
    finally:
        mail.stop()


async def test_a_recipient_with_no_usable_channel_is_reported_not_dropped(notifications):
    service, broker, client = await notifications()  # no SMTP configured here
    provider, broker_id = unique("prov"), unique("broker")
    # The API refuses a contact none of whose channels is configured (test below); these stand for
    # contacts registered while the installation had email and Notify, before they were taken away.
    with pytest.raises(AssertionError, match="is configured in this installation"):
        await register(client, "provider", provider, email=f"{provider}@example.org", channels=["email"])
    await repo.put_recipient(
        service.pool, "provider", provider, {"email": f"{provider}@example.org", "channels": ["email"]}
    )
    await repo.put_recipient(service.pool, "broker", broker_id, {"phone": "+447700900123", "channels": ["notify_sms"]})
    event = placed(provider, broker_id)
    await publish(broker, event)
    rows = await statuses(client, event.package_id)
    assert rows[("provider", provider, "none")]["status"] == "failed"
    assert (
        rows[("provider", provider, "none")]["reason"]
        == "no usable channel (email is not configured in this installation)"
    )
    assert (
        rows[("broker", broker_id, "none")]["reason"]
        == "no usable channel (notify_sms is not configured in this installation)"
    )
    assert {(f["recipient_kind"], f["channel"]) for f in await failures(service, event.package_id)} == {
        ("provider", "none"),
        ("broker", "none"),
    }


async def test_a_message_waits_for_a_contact_registered_later_or_fails_when_none_comes(notifications):
    service, broker, client = await notifications(contact_grace_seconds=3600)
    provider, broker_id = unique("prov"), unique("broker")
    await register(client, "provider", provider, channels=["log"])
    event = placed(provider, broker_id)  # neither the broker nor the family has a contact yet
    await publish(broker, event)
    rows = await statuses(client, event.package_id)
    assert rows[("person", str(event.package_id), "none")]["status"] == "awaiting_contact"
    assert rows[("broker", broker_id, "none")]["status"] == "awaiting_contact"
    registered = await register(client, "person", str(event.package_id), channels=["log"])
    assert registered["messages_planned_now"] == 1
    await dispatch_all(service)
    rows = await statuses(client, event.package_id)
    assert rows[("person", str(event.package_id), "log")]["status"] == "sent"
    assert ("person", str(event.package_id), "none") not in rows
    # The broker never registers: when the grace period is over, the message fails, and says so.
    await service.pool.execute(
        "UPDATE deliveries SET next_attempt_at = now() WHERE package_id = $1 AND status = 'awaiting_contact'",
        event.package_id,
    )
    async with unit_of_work(service.pool) as uow:
        assert await handlers.expire_awaiting(uow, service.rules) >= 1
    row = (await statuses(client, event.package_id))[("broker", broker_id, "none")]
    assert row["status"] == "failed" and row["reason"] == "no contact registered for the recipient within 3600 s"
    assert [f["recipient_kind"] for f in await failures(service, event.package_id)] == ["broker"]


async def test_a_contact_registered_while_a_placement_is_planned_is_the_one_it_uses(notifications):
    """Planning takes the recipients' locks and reads their contacts in one call (migration 0005,
    decision 0145): a plan that waited on a registration in progress sees the contact it committed."""
    service, _broker, client = await notifications()
    provider, broker_id = unique("prov"), unique("broker")
    await register(client, "provider", provider, channels=["log"])
    event = placed(provider, broker_id)
    registering, release = asyncio.Event(), asyncio.Event()

    async def register_slowly() -> None:
        async with unit_of_work(service.pool) as uow:
            await handlers.register_recipient(uow, service.rules, "broker", broker_id, {"channels": ["log"]})
            registering.set()
            await release.wait()

    async def plan() -> None:
        async with unit_of_work(service.pool) as uow:
            await handlers.notify(uow, service.rules, event)

    first = asyncio.create_task(register_slowly())
    await registering.wait()
    second = asyncio.create_task(plan())
    await asyncio.sleep(0.3)
    assert not second.done(), "the plan waits on the registration's lock"
    release.set()
    await asyncio.gather(first, second)
    rows = await statuses(client, event.package_id)
    assert ("broker", broker_id, "log") in rows and ("broker", broker_id, "none") not in rows


async def test_the_broker_is_told_the_providers_registered_name(notifications):
    """The provider's name comes with the recipients' contacts in one call (decision 0145); a
    provider with no registered name is named by its id."""
    _service, broker, client = await notifications()
    named, unnamed, broker_id = unique("prov"), unique("prov"), unique("broker")
    await register(client, "provider", named, name="Oak Tree Care", channels=["log"])
    await register(client, "broker", broker_id, channels=["log"])
    subjects = []
    for provider in (named, unnamed):
        event = placed(provider, broker_id)
        await publish(broker, event)
        subjects.append((await statuses(client, event.package_id))[("broker", broker_id, "log")]["subject"])
    assert subjects[0].startswith("Package placed with Oak Tree Care from "), subjects
    assert subjects[1].startswith(f"Package placed with {unnamed} from "), subjects


async def test_opted_out_messages_are_recorded_as_skipped(notifications):
    _service, broker, client = await notifications()
    provider, loser, broker_id = unique("prov"), unique("loser"), unique("broker")
    await register(
        client, "provider", provider, channels=["log"], opted_out=["placement_award"]
    )  # essential: sent anyway
    await register(client, "provider", loser, channels=["log"], opted_out=["placement_outcome"])
    await register(client, "broker", broker_id, channels=["log"])
    event = placed(provider, broker_id, losers=[loser])
    await publish(broker, event)
    rows = await statuses(client, event.package_id)
    assert rows[("provider", provider, "log")]["status"] == "pending"
    assert rows[("losing_bidder", loser, "none")]["status"] == "skipped"
    assert rows[("losing_bidder", loser, "none")]["reason"] == "the recipient opted out of placement_outcome"


async def test_govuk_notify_gets_an_authenticated_request_with_the_rendered_message(notifications):
    standin = NotifyStandIn()
    async with serving(standin.app()) as url:
        service, broker, client = await notifications(
            notify_api_key=standin.api_key,
            notify_base_url=url,
            notify_email_template_id="11111111-1111-4111-8111-111111111111",
            notify_sms_template_id="22222222-2222-4222-8222-222222222222",
            notify_template_ids={"placement_person.notify_sms": "33333333-3333-4333-8333-333333333333"},
        )
        provider, broker_id = unique("prov"), unique("broker")
        await register(
            client, "provider", provider, name="Oak Care", email=f"{provider}@example.org", channels=["notify_email"]
        )
        await register(client, "broker", broker_id, email=f"nobody-{broker_id}@example.org", channels=["notify_email"])
        event = placed(provider, broker_id)
        await register(client, "person", str(event.package_id), phone="07700 900123", channels=["notify_sms"])
        standin.fail_next = 1  # Notify has a bad moment first
        await publish(broker, event)
        for _ in range(3):
            await dispatch_all(service)
            await _make_due(service, event.package_id)
        rows = await statuses(client, event.package_id)
        assert rows[("provider", provider, "notify_email")]["status"] == "sent"
        assert rows[("person", str(event.package_id), "notify_sms")]["status"] == "sent"
        assert rows[("broker", broker_id, "notify_email")]["status"] == "failed"
        assert "GOV.UK Notify rejected the message: 400" in rows[("broker", broker_id, "notify_email")]["reason"]
        by_kind = {r["kind"]: r for r in standin.received}
        email, sms = by_kind["email"], by_kind["sms"]
        assert email["email_address"] == f"{provider}@example.org"
        assert email["template_id"] == "11111111-1111-4111-8111-111111111111"
        assert email["personalisation"]["subject"].startswith("Package awarded to you")
        assert email["reference"] == str(rows[("provider", provider, "notify_email")]["delivery_id"])
        assert sms["phone_number"] == "+447700900123" and sms["template_id"] == "33333333-3333-4333-8333-333333333333"
        assert "carers from Oak Care" in sms["personalisation"]["body"]
        assert [f["channel"] for f in await failures(service, event.package_id)] == ["notify_email"]
        assert not [m for m in standin.rejected if "Invalid token" in m or "Unauthorized" in m]


async def test_the_notify_standin_refuses_a_wrong_key(notifications):
    """The stand-in's JWT check can fail: a client with another secret is refused (403, transient here)."""
    standin = NotifyStandIn()
    async with serving(standin.app()) as url:
        wrong = f"homecare_test-{standin.service_id}-{uuid.uuid4()}"
        service, broker, client = await notifications(
            notify_api_key=wrong, notify_base_url=url, notify_email_template_id=str(uuid.uuid4())
        )
        provider = unique("prov")
        await register(client, "provider", provider, email=f"{provider}@example.org", channels=["notify_email"])
        event = placed(provider, unique("broker"))
        await publish(broker, event)
        await dispatch_all(service)
        row = (await statuses(client, event.package_id))[("provider", provider, "notify_email")]
        assert row["status"] == "pending" and "403" in row["reason"]
        assert standin.received == [] and any("Invalid token" in m for m in standin.rejected)


async def test_a_providers_webhook_gets_a_signed_delivery_once(notifications):
    secret = "a-provider-secret-of-some-length"
    receiver = WebhookReceiver(secret)
    async with serving(receiver.app()) as url:
        service, broker, client = await notifications()
        provider, broker_id = unique("prov"), unique("broker")
        await register(
            client, "provider", provider, webhook_url=f"{url}/homecare", webhook_secret=secret, channels=["webhook"]
        )
        await register(client, "broker", broker_id, channels=["log"])
        event = placed(provider, broker_id)
        receiver.answer = 503
        await publish(broker, event)
        await dispatch_all(service)
        await _make_due(service, event.package_id)
        receiver.answer = 200
        await dispatch_all(service)
        await publish(broker, event)
        await dispatch_all(service)
        row = (await statuses(client, event.package_id))[("provider", provider, "webhook")]
        assert row["status"] == "sent" and row["attempts"] == 2
        [delivery] = receiver.received
        assert receiver.delivery_ids == [str(row["delivery_id"])] == [delivery["delivery_id"]]
        assert delivery["message"] == "placement_award" and delivery["details"]["hourly_rate"] == "18.75"
        got = await client.get(f"/recipients/provider/{provider}")
        assert got.json()["webhook_secret_set"] is True and "webhook_secret" not in got.json()
        stored = await service.pool.fetchval(
            "SELECT webhook_secret FROM recipients WHERE kind = 'provider' AND recipient_id = $1", provider
        )
        assert stored.startswith("enc:v1:") and secret not in stored, "kept sealed at rest"


async def test_the_brokerage_team_hears_of_an_unplaced_package(notifications):
    service, broker, client = await notifications()
    package_id = uuid.uuid4()
    event = PackageUnplaced(
        correlation_id=package_id,
        package_id=package_id,
        zone="melton",
        band="rural",
        urgency="hospital_discharge",
        hours_per_week=Decimal(14),
        reason="no_acceptable_bid",
        requested_by="broker.sue",
        unplaced_at=dt.datetime.now(dt.UTC),
    )
    await publish(broker, event)
    await dispatch_all(service)
    [row] = (await client.get(f"/packages/{package_id}/notifications")).json()
    assert (row["recipient_role"], row["recipient_id"], row["channel"], row["status"]) == (
        "brokerage_team",
        "brokerage-team",
        "log",
        "sent",
    )  # seeded from deploy/reference/contacts.yaml
    assert row["subject"] == "Unplaced: 14 hours a week in melton (hospital discharge)"


@pytest.mark.parametrize(
    "path, body, status",
    [
        ("/recipients/person/not-a-package", {"channels": ["log"]}, 422),
        ("/recipients/provider/oak", {"channels": ["pigeon"]}, 422),
        ("/recipients/provider/oak", {"email": "not an address"}, 422),
        ("/recipients/provider/oak", {"webhook_url": "https://oak.example/hook"}, 422),
        ("/recipients/provider/oak", {"opted_in": ["placement_award"]}, 422),
        ("/recipients/provider/oak", {"name": "nul\u0000"}, 422),
        ("/recipients/nobody/oak", {}, 422),
    ],
)
async def test_bad_contacts_are_refused_with_a_reason(notifications, path, body, status):
    _, _, client = await notifications()
    response = await client.put(path, json=body)
    assert response.status_code == status and response.json()["error"]


@pytest.mark.parametrize(
    "body, missing",
    [
        ({"channels": ["email"]}, "email"),
        ({"channels": ["log", "notify_email"], "phone": "07700 900123"}, "email"),
        ({"channels": ["notify_sms"], "email": "oak@example.org"}, "phone"),
        ({"channels": ["webhook"], "email": "oak@example.org"}, "webhook_url"),
    ],
)
async def test_a_channel_needs_its_address_in_the_same_contact(notifications, body, missing):
    """Found by an attack: a contact choosing email with no email address was stored, and every
    message to it then failed ("no usable channel"). Now 422 naming channels and the field wanted,
    and nothing stored."""
    _, _, client = await notifications()
    response = await client.put("/recipients/provider/oak", json=body)
    assert response.status_code == 422, response.text
    [problem] = response.json()["fields"]
    assert problem["field"] == "channels" and f"no {missing} is given" in problem["message"], problem
    assert (await client.get("/recipients/provider/oak")).status_code == 404


@pytest.mark.parametrize(
    "body, words",
    [
        ({}, "choose at least one channel"),
        ({"email": "oak@example.org"}, "choose at least one channel"),
        ({"channels": []}, "choose at least one channel"),
        ({"channels": ["email"], "email": "oak@example.org"}, "none of email is configured"),
        (
            {"channels": ["notify_sms", "notify_email"], "phone": "07700 900123", "email": "o@example.org"},
            "none of notify_sms, notify_email is configured",
        ),
    ],
)
async def test_a_contact_no_message_could_reach_is_refused(notifications, body, words):
    """Found by an attack: a contact with no channel, or only channels this installation has not
    configured (here only the log and webhooks are), was stored - a PUT of {} wiped a provider's
    contact - and every message to it, essential ones too, failed. Now 422 naming channels, saying
    what is configured, and the contact there before is kept."""
    _, _, client = await notifications()
    await register(client, "provider", "oak", channels=["log"])
    response = await client.put("/recipients/provider/oak", json=body)
    assert response.status_code == 422, response.text
    [problem] = response.json()["fields"]
    assert problem["field"] == "channels" and words in problem["message"], problem
    assert "configured here: log, webhook" in problem["message"]
    assert (await client.get("/recipients/provider/oak")).json()["channels"] == ["log"]


async def test_a_channel_with_its_address_is_kept(notifications):
    _, _, client = await notifications()
    body = {"channels": ["notify_sms", "email", "log"], "email": "oak@example.org", "phone": "07700 900123"}
    response = await client.put("/recipients/provider/oak", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["channels"] == ["notify_sms", "email", "log"]


@pytest.mark.parametrize(
    "recipient",
    [
        "provider/x%0Ay",
        "provider/x%09",
        "provider/x%01",
        "provider/x%20",
        "provider/%E2%80%AEabc",
        "provider/%EF%BB%BFx",
        "provider/Oak-Care",
        "broker/amy%20",
        "broker/%E2%80%AEamy",
        "brokerage_team/team%0A",
    ],
)
async def test_a_recipient_id_must_be_an_id_of_its_kind(notifications, recipient):
    """Found by an attack: control characters, a bidi override, a byte-order mark, a trailing space
    were stored as providers' and brokers' ids (422 naming recipient_id now, and nothing stored)."""
    _, _, client = await notifications()
    response = await client.put(f"/recipients/{recipient}", json={"channels": ["log"]})
    assert response.status_code == 422 and response.json()["fields"][0]["field"] == "recipient_id", response.text


async def test_a_persons_contact_is_found_in_whatever_form_its_package_id_was_sent(notifications):
    """Found by an attack: an upper-case or braced package id was stored in its canonical form, and a
    read in the form it was sent in found nothing (404)."""
    _, _, client = await notifications()
    package_id = uuid.uuid4()
    upper = str(package_id).upper()
    await register(client, "person", upper, email="family@example.org", channels=["email", "log"])
    for form in (upper, f"{{{package_id}}}", package_id.hex, str(package_id)):
        got = await client.get(f"/recipients/person/{form}")
        assert got.status_code == 200 and got.json()["recipient_id"] == str(package_id), form


@pytest.mark.parametrize(
    "username, roles, kind, recipient_id, allowed",
    [
        # A provider's and the brokerage team's addresses: the council's administrators only.
        ("demo-broker", ("broker",), "provider", "bluebell-care", False),
        ("demo-senior", ("senior_broker",), "brokerage_team", "brokerage-team", False),
        ("demo-manager", ("manager",), "provider", "bluebell-care", False),
        ("demo-admin", ("council_admin",), "provider", "bluebell-care", True),
        ("demo-admin", ("council_admin",), "brokerage_team", "brokerage-team", True),
        # A broker's own contact: theirs, or a manager's to set; not another broker's.
        ("demo-broker", ("broker",), "broker", "demo-broker", True),
        ("demo-broker", ("broker",), "broker", "demo-senior", False),
        ("demo-manager", ("manager",), "broker", "demo-broker", True),
        # A person's (family's) contact: the brokerage team's work.
        ("demo-broker", ("broker",), "person", "6f1d8c3e-1111-4a5b-9c7d-0e2f3a4b5c6d", True),
        ("demo-ops", ("operations",), "person", "6f1d8c3e-1111-4a5b-9c7d-0e2f3a4b5c6d", False),
    ],
)
async def test_who_may_set_a_contact_depends_on_its_kind(notifications, username, roles, kind, recipient_id, allowed):
    """Found by an attack: a broker pointed a provider's award notices (their rates, the link to the
    person's details) and the brokerage team's alerts at an address of their own."""
    _, _, client = await notifications()
    before = await client.get(f"/recipients/{kind}/{recipient_id}")
    response = await client.put(
        f"/recipients/{kind}/{recipient_id}",
        json={"email": "someone@evil.example", "channels": ["email", "log"]},
        headers=local_issuer.headers("notifications", username, roles),
    )
    if allowed:
        assert response.status_code == 200, response.text
    else:
        assert response.status_code == 403, response.text
        after = await client.get(f"/recipients/{kind}/{recipient_id}")
        assert after.status_code == before.status_code and after.text == before.text, "nothing changed"


async def test_a_dispatcher_that_dies_after_claiming_leaves_the_delivery_to_be_sent_after_its_lease(notifications):
    mail = MailServer().start()
    try:
        service, broker, client = await notifications(
            smtp_host="127.0.0.1", smtp_port=mail.port, delivery_lease_seconds=60
        )
        provider = unique("prov")
        await register(client, "provider", provider, email=f"{provider}@example.org", channels=["email"])
        event = placed(provider, unique("broker"))
        await publish(broker, event)
        claimed = await repo.claim_due(service.pool, limit=1000, lease_seconds=60)  # ...and the process dies here
        assert any(r["recipient_id"] == provider for r in claimed)
        await dispatch_all(service)
        assert mail.to(f"{provider}@example.org") == [], "leased: no second dispatcher sends it meanwhile"
        await _make_due(service, event.package_id)  # the lease runs out
        await dispatch_all(service)
        row = (await statuses(client, event.package_id))[("provider", provider, "email")]
        assert row["status"] == "sent" and row["attempts"] == 2
        assert len(mail.to(f"{provider}@example.org")) == 1
    finally:
        mail.stop()


async def test_a_new_offer_reaches_only_the_providers_that_asked_for_offers(notifications):
    service, broker, client = await notifications()
    portal, automatic = unique("portal"), unique("auto")
    await register(client, "provider", portal, channels=["log"], opted_in=["new_offer"])
    await register(client, "provider", automatic, channels=["log"])
    package_id = uuid.uuid4()
    spec = PackageSpec(
        zone="melton",
        band="urban",
        postcode_district="LE13",
        hours_per_week=Decimal(7),
        visits=VisitPattern(calls_per_day=2, minutes_per_call=30, carers_per_call=1),
        needs=["personal_care"],
        urgency="community",
        start_date=dt.date(2026, 12, 1),
    )
    offer = OfferMade(
        correlation_id=package_id,
        package_id=package_id,
        offer_round=1,
        tier="prime",
        provider_ids=[portal, automatic],
        package=spec,
        band_rate=Decimal("18.75"),
        window_closes_at=dt.datetime(2026, 11, 24, 9, tzinfo=dt.UTC),
    )
    await publish(broker, offer)
    await dispatch_all(service)
    rows = await statuses(client, package_id)
    assert {k: r["status"] for k, r in rows.items()} == {("provider", portal, "log"): "sent"}
    assert rows[("provider", portal, "log")]["subject"].startswith("New offer: 7 hours a week in melton")


async def test_email_over_starttls_with_a_login(notifications, tmp_path):
    cert, context = self_signed_certificate(tmp_path)
    mail = MailServer(tls_context=context, login=("homecare", "s3cret-pass")).start()
    try:
        service, broker, client = await notifications(
            smtp_host="127.0.0.1",
            smtp_port=mail.port,
            smtp_security="starttls",
            smtp_cert_bundle=cert,
            smtp_username="homecare",
            smtp_password="wrong",
        )
        provider, _, event = await placed_for_provider_by_email(client, broker)
        await dispatch_all(service)
        row = (await statuses(client, event.package_id))[("provider", provider, "email")]
        assert row["status"] == "pending" and "SMTP login failed" in row["reason"], (
            "a wrong password is retried, not final"
        )
        service.channels.settings = service.settings.model_copy(update={"smtp_password": "s3cret-pass"})
        await _make_due(service, event.package_id)
        await dispatch_all(service)
        row = (await statuses(client, event.package_id))[("provider", provider, "email")]
        assert row["status"] == "sent" and len(mail.to(f"{provider}@example.org")) == 1
        assert mail.logins[-1] == ("homecare", True) and not any(ok for _, ok in mail.logins[:-1])
    finally:
        mail.stop()


async def test_email_is_not_sent_to_a_server_whose_certificate_is_not_trusted(notifications, tmp_path):
    _, context = self_signed_certificate(tmp_path)
    mail = MailServer(tls_context=context).start()
    try:
        service, broker, client = await notifications(
            smtp_host="127.0.0.1", smtp_port=mail.port, smtp_security="starttls"
        )
        provider, _, event = await placed_for_provider_by_email(client, broker)
        await dispatch_all(service)
        row = (await statuses(client, event.package_id))[("provider", provider, "email")]
        assert row["status"] == "pending" and "CERTIFICATE_VERIFY_FAILED" in row["reason"]
        assert mail.received == []
    finally:
        mail.stop()


async def test_a_broker_whose_staff_id_is_an_email_address_can_be_registered_and_told(notifications):
    """Staff ids on events are ids (letters, digits, . _ @ -), an email-like one included."""
    service, broker, client = await notifications()
    provider, broker_id = unique("prov"), f"amy.patel@{uuid.uuid4().hex[:6]}.council"
    await register(client, "provider", provider, channels=["log"])
    event = placed(provider, broker_id)
    await publish(broker, event)
    await register(client, "broker", broker_id, channels=["log"])
    await dispatch_all(service)
    assert (await statuses(client, event.package_id))[("broker", broker_id, "log")]["status"] == "sent"
    assert (await client.get(f"/recipients/broker/{broker_id}")).json()["recipient_id"] == broker_id


# The outbound guard (services/runtime/outbound.py) with the production policy: no plain HTTP,
# no loopback/private destinations. (The test session allows loopback for its own receivers.)
STRICT_OUTBOUND = {"outbound_allow_http": False, "outbound_allowed_networks": ""}


@pytest.mark.parametrize(
    "url",
    ["https://127.0.0.1:15432/", "https://localhost:19092/x", "https://169.254.169.254/", "http://hooks.example.org/"],
)
async def test_a_contact_webhook_that_reaches_inside_is_refused_when_registered(notifications, url):
    _, _, client = await notifications(**STRICT_OUTBOUND)
    response = await client.put(
        f"/recipients/provider/{unique('prov')}",
        json={"webhook_url": url, "webhook_secret": "x" * 20, "channels": ["webhook"]},
    )
    assert response.status_code == 422
    assert response.json()["fields"][0]["field"] == "webhook_url"


async def test_a_webhook_to_a_refused_address_is_never_sent_and_no_response_is_kept(notifications):
    """A contact stored before the guard (or whose name now resolves inside) is failed at once,
    without a connection; what a receiver answers is never stored (status code only)."""
    secret = "a-provider-secret-of-some-length"
    receiver = WebhookReceiver(secret)
    async with serving(receiver.app()) as url:
        service, broker, client = await notifications(**STRICT_OUTBOUND)
        provider, broker_id = unique("prov"), unique("broker")
        await register(client, "broker", broker_id, channels=["log"])
        await service.pool.execute(
            """INSERT INTO recipients (kind, recipient_id, webhook_url, webhook_secret, channels)
               VALUES ('provider', $1, $2, $3, ARRAY['webhook'])""",
            provider,
            f"{url}/homecare",
            secret,
        )
        event = placed(provider, broker_id)
        await publish(broker, event)
        await dispatch_all(service)
        row = (await statuses(client, event.package_id))[("provider", provider, "webhook")]
        assert row["status"] == "failed" and "destination refused" in row["reason"]
        assert receiver.received == []


async def test_a_pause_a_resume_and_an_ending_each_tell_the_provider_the_broker_and_the_family_once(notifications):
    """Decision record 0078: each event, delivered twice, one message per party and channel."""
    mail = MailServer().start()
    try:
        service, broker, client = await notifications(smtp_host="127.0.0.1", smtp_port=mail.port)
        provider, broker_id = unique("prov"), unique("broker")
        package_id = uuid.uuid4()
        await register(client, "provider", provider, email=f"{provider}@example.org", channels=["email"])
        await register(client, "broker", broker_id, email=f"{broker_id}@example.org", channels=["email"])
        await register(client, "person", str(package_id), email=f"family-{package_id}@example.org", channels=["email"])
        now = dt.datetime.now(dt.UTC)
        common = dict(
            correlation_id=package_id,
            package_id=package_id,
            provider_id=provider,
            hours_per_week=Decimal("7"),
            requested_by=broker_id,
        )
        events = [
            PackagePaused(
                **common,
                reason="admitted_to_hospital",
                paused_on=dt.date(2026, 12, 1),
                hold_expires_at=now + dt.timedelta(days=14),
                paid_during_hold=True,
                paused_by="broker.raj",
                paused_at=now,
            ),
            PackageResumed(
                **common,
                paused_on=dt.date(2026, 12, 1),
                resumed_on=dt.date(2026, 12, 5),
                resumed_by="broker.raj",
                resumed_at=now,
            ),
            PackageEnded(
                **common,
                reason="moved_to_residential_care",
                effective_date=dt.date(2026, 12, 20),
                ended_by="broker.raj",
                ended_at=now,
            ),
        ]
        for event in events:
            for _ in range(2):
                await publish(broker, event)
        await dispatch_all(service, rounds=3)
        rows = (await client.get(f"/packages/{package_id}/notifications")).json()
        assert sorted((r["message"], r["status"]) for r in rows) == sorted(
            (f"{name}_{who}", "sent")
            for name in ("paused", "resumed", "ended")
            for who in ("provider", "broker", "person")
        )
        for address in (f"{provider}@example.org", f"{broker_id}@example.org", f"family-{package_id}@example.org"):
            assert len(mail.to(address)) == 3, address
        subjects = [m["Subject"] for m in mail.to(f"{provider}@example.org")]
        assert any(s.startswith("Paused: keep the package") for s in subjects)
        assert "Ended: the package of 7 hours a week ends on Sunday 20 December 2026" in subjects
    finally:
        mail.stop()


async def test_a_batch_of_events_is_planned_as_one_at_a_time_with_one_read_of_its_recipients(
    notifications, monkeypatch
):
    """The consumer's batch goes to notify_all (decision 0151): its recipients are locked and read
    in one call for every event, and each event's deliveries and confirmation are those it gets
    alone - the provider named in each placement's words is its own, a recipient of two events
    is told of each."""
    service, _broker, client = await notifications()
    named, unnamed, broker_id = unique("prov"), unique("prov"), unique("broker")
    await register(client, "provider", named, name="Oak Tree Care", channels=["log"])
    await register(client, "provider", unnamed, channels=["log"])
    await register(client, "broker", broker_id, channels=["log"])
    first, second = placed(named, broker_id, losers=[unnamed]), placed(unnamed, broker_id, losers=[named])
    reads = []
    locked_contacts = repo.locked_contacts

    async def counted(conn, keys, *, named):
        reads.append((sorted(set(keys)), named))
        return await locked_contacts(conn, keys, named=named)

    monkeypatch.setattr(repo, "locked_contacts", counted)
    async with unit_of_work(service.pool) as uow:
        await handlers.notify_all(uow, service.rules, [first, second])
    assert len(reads) == 1, reads
    assert reads[0][1] == sorted([named, unnamed])
    batch = [(e.package_id, await statuses(client, e.package_id)) for e in (first, second)]

    # The same two events (new ids, new packages) one at a time, each in its own unit of work.
    alone = []
    for event in (first, second):
        again = event.model_copy(update={"event_id": uuid.uuid4(), "package_id": uuid.uuid4()})
        async with unit_of_work(service.pool) as uow:
            await handlers.notify(uow, service.rules, again)
        alone.append((again.package_id, await statuses(client, again.package_id)))
    assert len(reads) == 3

    def shape(package_id: uuid.UUID, rows: dict) -> dict:
        """Each delivery's status and subject's start, the person (known by the package id) as "person"."""
        return {
            (role, "person" if who == str(package_id) else who, channel): (
                r["status"],
                (r["subject"] or "").split(" from ")[0],
            )
            for (role, who, channel), r in rows.items()
        }

    assert [shape(*b) for b in batch] == [shape(*a) for a in alone]
    assert shape(*batch[0])[("broker", broker_id, "log")][1] == "Package placed with Oak Tree Care"
    assert shape(*batch[1])[("broker", broker_id, "log")][1] == f"Package placed with {unnamed}"
    assert ("person", "person", "none") in shape(*batch[0])
    confirmed = await service.pool.fetch(
        "SELECT aggregateid FROM outbox WHERE type = 'PlacementConfirmed' AND aggregateid = ANY($1::text[])",
        [str(first.package_id), str(second.package_id)],
    )
    assert len(confirmed) == 2


async def test_operations_sees_who_was_told_and_how_never_the_words_that_carry_a_rate(notifications):
    """Found by an attack on the providers service's offers: operations (never persons or prices)
    read every bid's rate; the award's message to its provider carries the rate too. Operations
    sees who was told, how and whether it arrived; the words only those who see prices."""
    service, broker, client = await notifications()
    provider, broker_id = unique("prov"), unique("broker")
    await register(client, "provider", provider, channels=["log"])
    await register(client, "broker", broker_id, channels=["log"])
    event = placed(provider, broker_id)
    await publish(broker, event)
    await dispatch_all(service)
    ops = local_issuer.headers("notifications", "demo-ops", ("operations",))
    for path in ("notifications", "confirmations"):
        seen = (await client.get(f"/packages/{event.package_id}/{path}")).json()
        told = (await client.get(f"/packages/{event.package_id}/{path}", headers=ops)).json()
        award = next(r for r in seen if r["recipient_id"] == provider)
        assert award["body"] and "18.75" in award["body"]  # the brokerage team reads the words
        assert [(r["recipient_id"], r["channel"], r["status"]) for r in told] == [
            (r["recipient_id"], r["channel"], r["status"]) for r in seen
        ]
        assert all(r["body"] is None and r["subject"] is None for r in told)
