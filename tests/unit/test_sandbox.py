"""Nothing reaches a real person from the sandbox (decision 0116): with ``HOMECARE_SANDBOX=true`` a
service refuses to start with an SMTP server or a GOV.UK Notify key configured, and the
notifications service's channels send email and texts to the log stand-in, never outside - even
with an outside channel configured behind the start-up check's back."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from services.notifications.channels import Channels, Outgoing, configured
from services.runtime.service import ConfigurationError, Service
from services.runtime.settings import load
from tests.standins import MailServer


def email(address: str = "sam@example.org") -> Outgoing:
    return Outgoing(
        delivery_id=str(uuid.uuid4()),
        package_id="p",
        message="placement_person",
        channel="email",
        address=address,
        subject="Your care",
        body="Hello.",
        large_print=False,
        context={},
    )


@pytest.mark.parametrize(
    "outside", [{"smtp_host": "smtp.council.example.gov.uk"}, {"notify_api_key": "live-key-0123456789"}]
)
def test_a_sandbox_service_refuses_to_start_with_an_outside_channel(outside):
    settings = load("notifications", sandbox=True, **outside)
    assert settings.sandbox_problems()
    with pytest.raises(ConfigurationError, match="refuses to start in the sandbox"):
        Service(settings, migrations=Path("."))
    # The same settings outside the sandbox are a normal installation's.
    assert load("notifications", **outside).sandbox_problems() == []


async def test_in_the_sandbox_email_goes_to_the_stand_in_never_to_the_mail_server():
    server = MailServer().start()
    try:
        real = {"smtp_host": "127.0.0.1", "smtp_port": server.port, "smtp_security": "none"}
        await Channels(load("notifications", **real)).send(email())
        assert len(server.received) == 1, "outside the sandbox the same message is sent"
        sandboxed = load("notifications", sandbox=True, **real)
        await Channels(sandboxed).send(email())
        assert len(server.received) == 1, "nothing more reached the mail server from the sandbox"
    finally:
        server.stop()


def test_in_the_sandbox_every_channel_plays_out_through_the_stand_in():
    assert configured(load("notifications", sandbox=True)) >= {"email", "notify_email", "notify_sms"}
    assert configured(load("notifications")) == {"log", "webhook"}
