"""The console over HTTPS by default: Secure cookies and HSTS unless configured for plain HTTP on loopback."""

from __future__ import annotations

import httpx
import pytest

from services.console.app import build
from services.runtime.settings import load


@pytest.mark.parametrize("secure", [True, False])
async def test_cookies_are_secure_and_hsts_is_sent_unless_told_otherwise(monkeypatch, secure):
    if not secure:
        monkeypatch.setenv("CONSOLE_COOKIE_SECURE", "false")
    else:
        monkeypatch.delenv("CONSOLE_COOKIE_SECURE", raising=False)
    monkeypatch.setenv("OIDC_ISSUER", "https://idp.example.org/realms/council")  # else it refuses to start
    settings = load("console")
    assert settings.cookie_secure is secure
    _, app = build(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://console") as client:
        response = await client.get("/sign-in")
    cookie = response.headers["set-cookie"]
    assert ("Secure" in cookie) is secure
    assert ("Strict-Transport-Security" in response.headers) is secure
