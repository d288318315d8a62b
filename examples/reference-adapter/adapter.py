"""A reference webhook adapter for the home care brokerage's provider API: start here.

It is written against the published contract only - the provider API's OpenAPI document
(docs/openapi/providers.json), the webhook bodies (schemas/json/adapter.*.schema.json) and the
signing specification (docs/guide/provider-integration.md#webhook-signing) - and imports nothing
from the platform's code. Dependencies: starlette, uvicorn, httpx.

What it does:

- ``register``: registers this receiver's URL (``PUT /me/webhook``), writes the signing secret
  (shown once) to a file only you can read, and asks for a test offer (``POST /me/webhook/test``);
- ``serve``: receives deliveries; verifies each signature (every secret in the secret file: put the
  new one first during a rotation's overlap), refuses stale or forged ones (401), drops a delivery
  id it already handled (2xx), answers 2xx at once and decides afterwards:
  an **offer** is bid for or declined by the rules file; a **change** to a package it holds is
  accepted or declined by the same rules; a **test offer** and a **closing notice** are recorded;
- ``sandbox-offer [JSON]``: in the sandbox only (docs/guide/sandbox.md), asks for a test offer of a
  made-up package (``POST /me/sandbox/offers``; JSON: its optional zone, band, needs, visits), which
  then arrives like any offer and is answered by the rules;
- every decision is appended to a journal (JSON lines), for your own records and for the tests.

Configuration (environment): ``PROVIDERS_URL`` (the provider API), ``PROVIDER_TOKEN`` (your
``hcp_...`` credential), ``SECRET_FILE`` (one secret a line), ``RULES_FILE``, ``JOURNAL_FILE``,
``PORT`` (serve). A production receiver also keeps handled delivery ids in a database (24 hours
at least), runs behind HTTPS, and retries its answers with the same ``Idempotency-Key``.

    python adapter.py serve &                                            # the receiver first,
    python adapter.py register https://rostering.example.com/homecare   # then the test offer finds it
    python adapter.py sandbox-offer '{"zone": "lutterworth"}'          # the sandbox: a whole offer's life
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import os
import sys
import time
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

TOLERANCE_SECONDS = 300  # the signing specification's staleness tolerance


# ---- the signature (the specification, in full) -------------------------------------------


class SignatureError(ValueError):
    """Refuse the delivery with a 401."""


def verify(secrets: list[str], headers: dict[str, str], body: bytes, now: float | None = None) -> str:
    """The delivery id of a delivery signed with any of ``secrets``; else :class:`SignatureError`.

    HMAC-SHA256 keyed with the whole secret string's UTF-8 bytes (``whsec_`` included), over
    ``<delivery id>.<timestamp>.<raw body>``; the header holds ``v2=<hex>``, two of them,
    comma-separated, during a secret rotation's overlap."""
    h = {k.lower(): v for k, v in headers.items()}
    delivery_id, stamp, given = (
        h.get("homecare-delivery-id"),
        h.get("homecare-timestamp", ""),
        h.get("homecare-signature"),
    )
    if not delivery_id or not given or not stamp.isascii() or not stamp.isdigit():
        raise SignatureError("missing or malformed signature headers")
    if abs((time.time() if now is None else now) - int(stamp)) > TOLERANCE_SECONDS:
        raise SignatureError("stale delivery")
    candidates = [c.strip() for c in given.split(",")]
    for secret in secrets:
        mac = hmac.new(secret.encode("utf-8"), f"{delivery_id}.{stamp}.".encode() + body, hashlib.sha256)
        expected = f"v2={mac.hexdigest()}"
        if any(hmac.compare_digest(c, expected) for c in candidates):
            return delivery_id
    raise SignatureError("signature does not match")


# ---- the rules -----------------------------------------------------------------------------


def decide(rules: dict[str, Any], offer: dict[str, Any]) -> dict[str, Any]:
    """A bid ``{"rate", "earliest_start"}`` or a decline ``{"reason", "text"}`` for an offer (or a
    change: its ``package`` after the change), by the rules file:

    ``zones`` (covered; empty: any), ``needs`` (the care needs it meets), ``max_hours_per_week``
    (carer hours per week), ``double_handed`` (whether it takes two-carer calls),
    ``premium_percent`` (over the band rate, per band), ``lead_days`` (notice needed before a start).
    Reasons are the framework's codes (the DeclineRequest schema's ``reason``)."""
    package = offer["package"]
    if rules.get("zones") and package["zone"] not in rules["zones"]:
        return {"reason": "geography", "text": ""}
    if set(package["needs"]) - set(rules.get("needs", [])):
        return {"reason": "skills", "text": ""}
    if package["visits"]["carers_per_call"] > 1 and not rules.get("double_handed", False):
        return {"reason": "skills", "text": ""}
    if Decimal(package["hours_per_week"]) > Decimal(str(rules.get("max_hours_per_week", 0))):
        return {"reason": "capacity", "text": ""}
    if "band_rate" not in offer:
        return {}  # a change: nothing to price
    premium = Decimal(str(rules.get("premium_percent", {}).get(package["band"], 0)))
    rate = (Decimal(offer["band_rate"]) * (1 + premium / 100)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    start = max(dt.date.fromisoformat(package["start_date"]), dt.date.today() + dt.timedelta(rules.get("lead_days", 0)))
    return {"rate": str(rate), "earliest_start": start.isoformat()}


# ---- the receiver --------------------------------------------------------------------------


class Adapter:
    def __init__(self, providers_url: str, token: str, secret_file: Path, rules_file: Path, journal: Path) -> None:
        self.providers_url, self.token = providers_url, token
        self.secret_file, self.rules_file, self.journal = secret_file, rules_file, journal
        self.handled: set[str] = set()  # production: a table, kept 24 h at least

    def secrets(self) -> list[str]:
        # Read on every delivery: replace the file to rotate, without a restart. None yet: refuse all.
        if not self.secret_file.exists():
            return []
        return [line.strip() for line in self.secret_file.read_text().splitlines() if line.strip()]

    def record(self, **entry: Any) -> None:
        with self.journal.open("a") as out:
            out.write(json.dumps({"at": dt.datetime.now(dt.UTC).isoformat()} | entry) + "\n")

    async def receive(self, request: Request) -> Response:
        body = await request.body()  # the raw bytes: verify before parsing
        try:
            delivery_id = verify(self.secrets(), dict(request.headers), body)
        except SignatureError as exc:
            self.record(event="refused", why=str(exc))
            return JSONResponse({"error": str(exc)}, status_code=401)
        if delivery_id in self.handled:
            return Response(status_code=200)  # a retry of a delivery already handled
        self.handled.add(delivery_id)
        notice = json.loads(body)
        # Answer 2xx at once (the platform waits 10 s at most); decide and answer afterwards.
        return JSONResponse({"received": delivery_id}, background=BackgroundTask(self.handle, delivery_id, notice))

    async def handle(self, delivery_id: str, notice: dict[str, Any]) -> None:
        kind = notice.get("kind")
        if kind == "offer":
            await self.answer_offer(delivery_id, notice)
        elif kind == "change":
            await self.answer_change(delivery_id, notice)
        elif kind == "test_offer":
            self.record(event="test_offer", delivery_id=delivery_id, package_id=notice["package_id"])
        elif kind == "offer_closed":
            self.record(
                event="offer_closed",
                delivery_id=delivery_id,
                package_id=notice["package_id"],
                outcome=notice["outcome"],
                reason=notice["reason"],
                rank=notice.get("rank"),
            )
        else:
            self.record(event="ignored", delivery_id=delivery_id, kind=kind)  # a kind added later: ignore it

    async def post(self, path: str, body: dict[str, Any], key: str) -> httpx.Response:
        """An answer, with an Idempotency-Key made from the delivery: a retry is safe."""
        async with httpx.AsyncClient(base_url=self.providers_url, timeout=15) as client:
            for attempt in range(4):
                try:
                    r = await client.post(
                        path, json=body, headers={"Authorization": f"Bearer {self.token}", "Idempotency-Key": key}
                    )
                    if r.status_code < 500:
                        return r
                except httpx.TransportError:
                    pass
                await asyncio.sleep(2**attempt)
            raise RuntimeError(f"{path}: the provider API did not answer")

    async def answer_offer(self, delivery_id: str, offer: dict[str, Any]) -> None:
        answer = decide(json.loads(self.rules_file.read_text()), offer)
        action = "bid" if "rate" in answer else "decline"
        r = await self.post(offer["answer_with"][action], answer, key=f"{delivery_id}-{action}")
        problem = r.json() if r.status_code >= 400 else {}
        self.record(
            event=action,
            delivery_id=delivery_id,
            package_id=offer["package_id"],
            answer=answer,
            status=r.status_code,
            code=problem.get("code"),  # e.g. offer-closed: the round ended first; nothing to do
        )

    async def answer_change(self, delivery_id: str, change: dict[str, Any]) -> None:
        answer = decide(json.loads(self.rules_file.read_text()), change)
        action = "decline" if "reason" in answer else "accept"
        r = await self.post(change["answer_with"][action], answer if answer else {}, key=f"{delivery_id}-{action}")
        self.record(
            event=f"change_{action}", delivery_id=delivery_id, change_id=change["change_id"], status=r.status_code
        )


def settings() -> dict[str, Any]:
    env = os.environ
    return {
        "providers_url": env["PROVIDERS_URL"],
        "token": env["PROVIDER_TOKEN"],
        "secret_file": Path(env.get("SECRET_FILE", "webhook-secret.txt")),
        "rules_file": Path(env.get("RULES_FILE", Path(__file__).with_name("rules.json"))),
        "journal": Path(env.get("JOURNAL_FILE", "journal.jsonl")),
    }


def register(url: str) -> int:
    """Register ``url``; keep the secret (shown once) in SECRET_FILE; ask for a test offer."""
    s = settings()
    auth = {"Authorization": f"Bearer {s['token']}"}
    with httpx.Client(base_url=s["providers_url"], timeout=15, headers=auth) as client:
        r = client.put("/me/webhook", json={"url": url})
        if r.status_code != 200:
            print(f"registration refused: {r.status_code} {r.json().get('detail')}", file=sys.stderr)
            return 1
        secret = r.json().get("signing_secret")
        if secret:
            s["secret_file"].touch(mode=0o600)
            s["secret_file"].write_text(secret + "\n")
            print(f"registered {url}; signing secret written to {s['secret_file']}")
        else:
            print(f"registered {url}; the signing secret is the one you already have")
        test = client.post("/me/webhook/test")
        print(f"test offer queued: delivery {test.json().get('delivery_id')}" if test.status_code == 202 else test.text)
    return 0


def sandbox_offer(body: str) -> int:
    """In the sandbox: ask for a made-up package offered to you alone; prints its package id."""
    s = settings()
    with httpx.Client(base_url=s["providers_url"], timeout=15) as client:
        r = client.post("/me/sandbox/offers", json=json.loads(body), headers={"Authorization": f"Bearer {s['token']}"})
    if r.status_code != 201:
        print(f"refused: {r.status_code} {r.json().get('code')} {r.json().get('detail')}", file=sys.stderr)
        return 1
    print(f"sandbox package {r.json()['package_id']}: {r.json()['status']}")
    return 0


def serve() -> int:
    s = settings()
    adapter = Adapter(**s)
    app = Starlette(routes=[Route("/homecare", adapter.receive, methods=["POST"])])
    uvicorn.run(app, host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "8080")))
    return 0


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "register" and len(sys.argv) == 3:
        sys.exit(register(sys.argv[2]))
    if command == "serve":
        sys.exit(serve())
    if command == "sandbox-offer" and len(sys.argv) <= 3:
        sys.exit(sandbox_offer(sys.argv[2] if len(sys.argv) == 3 else "{}"))
    print(__doc__, file=sys.stderr)
    sys.exit(2)
