"""Local servers the notification channels talk to in tests.

- :class:`MailServer`: a real SMTP server (aiosmtpd) on a free loopback port, recording what
  arrived; it can refuse chosen addresses (550) and be started late ("down, then up").
- :func:`notify_standin`: a STAND-IN for GOV.UK Notify's HTTP API, which cannot be reached from
  here. It checks what the official client sends - the JWT (HS256, issuer = service id, signed
  with the key's secret, issued within 30 s) and the request body - and answers as Notify's
  documentation says (201, 400 with ``errors``, 403 for a bad token).
- :func:`webhook_receiver`: a provider's system that verifies each delivery's signature.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from typing import Any

import jwt
import uvicorn
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.runtime.signing import SignatureError, verify
from tests.support import free_port


@dataclass
class MailServer:
    refuse: tuple[str, ...] = ("nobody",)
    port: int = field(default_factory=free_port)
    received: list = field(default_factory=list)
    controller: Controller | None = None
    tls_context: ssl.SSLContext | None = None  # given: STARTTLS required before anything is accepted
    login: tuple[str, str] | None = None  # given: AUTH required (after STARTTLS)
    logins: list = field(default_factory=list)

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and self.login == (
            auth_data.login.decode(),
            auth_data.password.decode(),
        )
        self.logins.append((auth_data.login.decode(), ok))
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith(self.refuse):
            return f"550 5.1.1 <{address}>: mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.received.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 Message accepted for delivery"

    def start(self) -> MailServer:
        secure: dict[str, Any] = {"tls_context": self.tls_context, "require_starttls": True} if self.tls_context else {}
        if self.login:
            secure |= {
                "authenticator": self._authenticate,
                "auth_required": True,
                "auth_require_tls": bool(self.tls_context),
            }
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, **secure)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller:
            self.controller.stop()
            self.controller = None

    def to(self, address: str) -> list:
        return [m for m in self.received if m["To"] == address]


def self_signed_certificate(folder) -> tuple[str, ssl.SSLContext]:
    """A certificate for 127.0.0.1 made with openssl: returns (its path, the server's TLS context)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return str(cert), context


@asynccontextmanager
async def serving(app: FastAPI):
    """Run an ASGI app on a free loopback port for the duration; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@dataclass
class NotifyStandIn:
    service_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    secret: str = field(default_factory=lambda: str(uuid.uuid4()))
    received: list[dict] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    fail_next: int = 0  # answer this many requests with 500 first

    @property
    def api_key(self) -> str:
        return f"homecare_test-{self.service_id}-{self.secret}"

    def app(self) -> FastAPI:
        app = FastAPI(title="GOV.UK Notify stand-in")

        def error(status: int, kind: str, message: str) -> JSONResponse:
            self.rejected.append(message)
            return JSONResponse(
                status_code=status, content={"status_code": status, "errors": [{"error": kind, "message": message}]}
            )

        async def check(request: Request, kind: str):
            if self.fail_next:
                self.fail_next -= 1
                return error(500, "Exception", "Internal server error")
            auth = request.headers.get("authorization", "")
            if not auth.startswith("Bearer "):
                return error(401, "AuthError", "Unauthorized: authentication token must be provided")
            try:
                claims = jwt.decode(
                    auth.removeprefix("Bearer "),
                    self.secret,
                    algorithms=["HS256"],
                    options={"require": ["iss", "iat"], "verify_iat": False},
                )
            except jwt.PyJWTError as exc:
                return error(403, "AuthError", f"Invalid token: {exc}")
            if claims["iss"] != self.service_id or abs(time.time() - claims["iat"]) > 30:
                return error(403, "AuthError", "Invalid token: issuer or issued-at")
            body = await request.json()
            address_field = "email_address" if kind == "email" else "phone_number"
            expected = {address_field, "template_id", "personalisation", "reference"}
            if not set(body) <= expected | {"email_reply_to_id", "sms_sender_id"} or not {
                address_field,
                "template_id",
            } <= set(body):
                return error(400, "ValidationError", f"unexpected fields {sorted(body)}")
            if kind == "email" and "@" not in body["email_address"]:
                return error(400, "ValidationError", "email_address Not a valid email address")
            if body["email_address" if kind == "email" else "phone_number"].startswith("nobody"):
                return error(400, "BadRequestError", "Can't send to this recipient using a team-only API key")
            self.received.append(body | {"kind": kind})
            notification_id = str(uuid.uuid4())
            return JSONResponse(
                status_code=201,
                content={
                    "id": notification_id,
                    "reference": body.get("reference"),
                    "content": {
                        "subject": body.get("personalisation", {}).get("subject", ""),
                        "body": body.get("personalisation", {}).get("body", ""),
                        "from_email": "test@notify",
                    },
                    "uri": f"/v2/notifications/{notification_id}",
                    "template": {"id": body["template_id"], "version": 1, "uri": f"/v2/template/{body['template_id']}"},
                },
            )

        @app.post("/v2/notifications/email")
        async def email(request: Request):
            return await check(request, "email")

        @app.post("/v2/notifications/sms")
        async def sms(request: Request):
            return await check(request, "sms")

        return app


@dataclass
class WebhookReceiver:
    secret: str
    received: list[dict] = field(default_factory=list)
    delivery_ids: list[str] = field(default_factory=list)
    answer: int = 200

    def app(self) -> FastAPI:
        app = FastAPI(title="A provider's rostering system")

        @app.post("/homecare")
        async def receive(request: Request):
            body = await request.body()
            try:
                delivery_id = verify(self.secret, dict(request.headers), body)
            except SignatureError as exc:
                return JSONResponse(status_code=401, content={"error": str(exc)})
            if self.answer != 200:
                return JSONResponse(status_code=self.answer, content={"error": "not now"})
            self.delivery_ids.append(delivery_id)
            self.received.append(await request.json())
            return {"ok": True}

        return app
