"""The channels a message can go by. Each send either returns (the channel accepted it) or
raises :class:`Transient` (try again later: a server away, busy or timing out) or
:class:`Permanent` (this message can never go this way: an address refused, a request rejected).

- ``email``: SMTP with aiosmtplib (STARTTLS, implicit TLS or plain; optional login);
- ``notify_email`` / ``notify_sms``: GOV.UK Notify through its official client, the rendered
  subject and body passed as personalisation to a template that shows them;
- ``webhook``: a JSON POST to the provider's system, signed with ``services.runtime.signing``;
- ``log``: a line in the service log (the default: needs no outside service).

In the sandbox (``HOMECARE_SANDBOX=true``, decision 0116) the channels that reach people - email
and GOV.UK Notify - are never used: each such message goes to the **sandbox stand-in**, a log line
saying which channel it would have gone by, and the service refuses to start with an SMTP host or
a Notify key configured (``ServiceSettings.sandbox_problems``).

Every channel carries the delivery id (Message-ID, Notify reference, webhook delivery id
header), so a receiver can drop the duplicate that a crash between its acceptance and our
commit can cause.
"""

from __future__ import annotations

import asyncio
import html
import json
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib
import httpx
from notifications_python_client.errors import APIError
from notifications_python_client.notifications import NotificationsAPIClient

from services.runtime.logging import get_logger
from services.runtime.outbound import guarded_client, is_refused
from services.runtime.settings import ServiceSettings
from services.runtime.signing import signed_headers

log = get_logger(__name__)


class Transient(Exception):
    """Worth trying again later."""


class Permanent(Exception):
    """Will never succeed by trying again."""


@dataclass(frozen=True)
class Outgoing:
    delivery_id: str
    package_id: str
    message: str
    channel: str
    address: str
    subject: str
    body: str
    large_print: bool
    context: dict
    webhook_secret: str | None = None


# The channels that reach people (an inbox, a phone): never used in the sandbox.
OUTSIDE_CHANNELS = frozenset({"email", "notify_email", "notify_sms"})
SANDBOX_STANDIN = "sandbox-log"  # what the sandbox sends them to instead (a log line)


def configured(settings: ServiceSettings) -> frozenset[str]:
    """The channels this installation can use. In the sandbox every channel is usable, the
    outside ones through the stand-in (so a contact's choice plays out as it would, harmlessly)."""
    channels = {"log", "webhook"}
    if settings.sandbox:
        return frozenset(channels | OUTSIDE_CHANNELS)
    if settings.smtp_host:
        channels.add("email")
    if settings.notify_api_key and settings.notify_email_template_id:
        channels.add("notify_email")
    if settings.notify_api_key and settings.notify_sms_template_id:
        channels.add("notify_sms")
    return frozenset(channels)


class Channels:
    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.box = settings.secret_box()  # webhook secrets are stored sealed

    async def send(self, out: Outgoing) -> None:
        if self.settings.sandbox and out.channel in OUTSIDE_CHANNELS:
            await self._standin(out)  # enforced here too, whatever else was configured
            return
        sender = {
            "email": self._email,
            "notify_email": self._notify,
            "notify_sms": self._notify,
            "webhook": self._webhook,
            "log": self._log,
        }.get(out.channel)
        if sender is None:
            raise Permanent(f"unknown channel {out.channel!r}")
        await sender(out)

    async def _log(self, out: Outgoing) -> None:
        log.info(
            "notification",
            channel="log",
            delivery_id=out.delivery_id,
            package_id=out.package_id,
            message=out.message,
            subject=out.subject,
        )

    async def _standin(self, out: Outgoing) -> None:
        """The sandbox's stand-in for email and GOV.UK Notify: the message in the log, never sent."""
        log.info(
            "notification",
            channel=SANDBOX_STANDIN,
            would_have_gone_by=out.channel,
            delivery_id=out.delivery_id,
            package_id=out.package_id,
            message=out.message,
            subject=out.subject,
        )

    # ---- email ---------------------------------------------------------------------------

    def email_message(self, out: Outgoing) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.settings.smtp_from
        msg["To"] = out.address
        msg["Subject"] = out.subject
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = f"<{out.delivery_id}@homecare-brokerage>"
        msg.set_content(out.body)
        if out.large_print:
            # Mail readers show the HTML part: the text at a large size, with room between lines.
            paragraphs = "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in out.body.split("\n\n"))
            msg.add_alternative(
                '<html><body style="font-family: Arial, sans-serif; font-size: 24px; line-height: '
                f'1.6">{paragraphs}</body></html>',
                subtype="html",
            )
        return msg

    async def _email(self, out: Outgoing) -> None:
        s = self.settings
        try:
            refused, _ = await aiosmtplib.send(
                self.email_message(out),
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_username,
                password=s.smtp_password,
                use_tls=s.smtp_security == "tls",
                start_tls=s.smtp_security == "starttls",
                cert_bundle=s.smtp_cert_bundle,
                timeout=s.smtp_timeout_seconds,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            detail = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
            if all(code >= 500 for code in codes):
                raise Permanent(f"the mail server refused the address: {detail}") from None
            raise Transient(f"the mail server deferred the address: {detail}") from None
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise Transient(f"SMTP login failed (check the credentials): {exc.code} {exc.message}") from None
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code >= 500:
                raise Permanent(f"the mail server rejected the message: {exc.code} {exc.message}") from None
            raise Transient(f"the mail server deferred the message: {exc.code} {exc.message}") from None
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            raise Transient(f"mail server unreachable: {exc!r}") from None
        if refused:
            detail = "; ".join(f"{code} {text}" for code, text in refused.values())
            raise Permanent(f"the mail server refused the address: {detail}")

    # ---- GOV.UK Notify -------------------------------------------------------------------

    def notify_template(self, out: Outgoing) -> str | None:
        s = self.settings
        default = s.notify_email_template_id if out.channel == "notify_email" else s.notify_sms_template_id
        return s.notify_template_ids.get(f"{out.message}.{out.channel}", default)

    async def _notify(self, out: Outgoing) -> None:
        s = self.settings
        template_id = self.notify_template(out)
        if not (s.notify_api_key and template_id):
            raise Permanent(f"{out.channel} is not configured (API key and template id)")
        client = NotificationsAPIClient(s.notify_api_key, base_url=s.notify_base_url, timeout=s.notify_timeout_seconds)
        try:
            if out.channel == "notify_email":
                call = lambda: client.send_email_notification(  # noqa: E731
                    email_address=out.address,
                    template_id=template_id,
                    personalisation={"subject": out.subject, "body": out.body},
                    reference=out.delivery_id,
                )
            else:
                call = lambda: client.send_sms_notification(  # noqa: E731
                    phone_number=out.address,
                    template_id=template_id,
                    personalisation={"subject": out.subject, "body": out.body},
                    reference=out.delivery_id,
                )
            # The official client is synchronous (requests): keep it off the event loop.
            await asyncio.to_thread(call)
        except APIError as exc:
            # Notify answers 400 for a bad address or template, 403 for a bad key, 429 when
            # over its rate limit and 5xx when away (the client reports a lost connection as 503).
            if exc.status_code == 400:
                raise Permanent(f"GOV.UK Notify rejected the message: {exc.status_code} {exc.message}") from None
            raise Transient(f"GOV.UK Notify: {exc.status_code} {exc.message}") from None
        except Exception as exc:
            raise Transient(f"GOV.UK Notify unreachable: {exc!r}") from None

    # ---- webhook -------------------------------------------------------------------------

    async def _webhook(self, out: Outgoing) -> None:
        secret = self.box.open(out.webhook_secret)
        if not secret:
            raise Permanent("no webhook secret registered")
        body = json.dumps(
            {
                "delivery_id": out.delivery_id,
                "package_id": out.package_id,
                "message": out.message,
                "subject": out.subject,
                "body": out.body,
                "details": out.context,
            }
        ).encode()
        try:
            policy = self.settings.outbound_policy()
            async with guarded_client(policy, timeout=self.settings.webhook_timeout_seconds) as client:
                response = await client.post(
                    out.address, content=body, headers=signed_headers(secret, out.delivery_id, body)
                )
        except httpx.HTTPError as exc:
            if is_refused(exc):  # a private or loopback address: no retry will make it allowed
                raise Permanent(f"webhook not sent: {exc}") from None
            raise Transient(f"webhook unreachable: {exc!r}") from None
        if response.is_success:
            return
        if response.status_code in (408, 425, 429) or response.status_code >= 500:
            raise Transient(f"webhook answered {response.status_code}")
        # The status code only: a receiver's body is never stored or shown (decision 0070).
        raise Permanent(f"webhook refused the delivery: HTTP {response.status_code}")
