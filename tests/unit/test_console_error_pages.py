"""The console's error pages over HTTP (the app in-process, no database: these pages need none):
GOV.UK's "Page not found" for any address that is no page and "Sorry, there is a problem with the
service" when a page fails - always a page with the console's headers, never JSON or a traceback."""

from __future__ import annotations

import httpx
import pytest

from services.console.app import build
from services.runtime.settings import load


@pytest.fixture
def app(monkeypatch):
    monkeypatch.setenv("OIDC_ISSUER", "https://idp.example.org/realms/council")  # else it refuses to start
    _, app = build(load("console"))

    @app.get("/test-fails")
    async def fails() -> None:
        raise RuntimeError("secret detail: database password is hunter2")

    return app


async def get(app, path: str, method: str = "GET") -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://console") as client:
        return await client.request(method, path)


@pytest.mark.parametrize("path", ["/no-such-page", "/packages/x/y/z", "/static/../etc/passwd", "/ops/nothing"])
async def test_an_address_that_is_no_page_gets_govuks_page_not_found(app, path):
    response = await get(app, path)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert '<h1 class="govuk-heading-l">Page not found</h1>' in response.text
    assert "If you typed the web address, check it is correct." in response.text
    assert (
        "no-store" in response.headers["cache-control"]
        and "frame-ancestors 'none'" in response.headers["content-security-policy"]
    )


async def test_a_page_opened_the_wrong_way_is_not_json_either(app):
    response = await get(app, "/sign-out", method="GET")  # a form's address, opened as a link
    assert response.status_code in (404, 405) and "Page not found" in response.text
    assert not response.text.lstrip().startswith("{")


async def test_a_page_that_fails_shows_the_problem_page_without_the_details(app):
    response = await get(app, "/test-fails")
    assert response.status_code == 500
    assert "Sorry, there is a problem with the service" in response.text and "Try again later." in response.text
    assert "hunter2" not in response.text and "Traceback" not in response.text
    assert response.headers["x-frame-options"] == "DENY" and response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("path", ["/ops/lag", "/ops/lag?fresh=1&behind=1", "/ops/dead-letters"])
async def test_an_operations_page_says_kafka_cannot_be_read_while_it_is_away(monkeypatch, path):
    """Found by an attack with Kafka stopped: the lag and dead-letter pages read Kafka themselves when
    the overview's reading had nothing, and were a 500 that also dropped the connection."""
    import datetime as dt

    from services.console.api.sessions import Sessions
    from services.console.handlers import Session

    monkeypatch.setenv("OIDC_ISSUER", "https://idp.example.org/realms/council")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")  # the discard port: nothing listens
    _, app = build(load("console"))
    ops = Session(
        token_hash=b"x",
        kind="staff",
        csrf_token="tok",
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
        username="demo-ops",
        display_name="Ops",
        role="ops",
    )

    async def signed_in(self, request):
        return ops

    monkeypatch.setattr(Sessions, "session_of", signed_in)
    response = await get(app, path)
    assert response.status_code == 503, response.text[:500]
    assert "Kafka cannot be read now" in response.text and response.headers["content-type"].startswith("text/html")
