"""The HTTP edge's middleware on a bare ASGI app: limits before parsing, the body passed on
intact, the correlation id on every response (those the middleware refuses too)."""

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.runtime.http import CORRELATION_HEADER, EdgeMiddleware


async def echo(request: Request):
    body = await request.body()
    return JSONResponse({"length": len(body), "body": body.decode()})


@pytest.fixture
def client():
    app = EdgeMiddleware(Starlette(routes=[Route("/echo", echo, methods=["GET", "POST"])]), max_bytes=100)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://edge")


async def test_a_body_within_the_limit_reaches_the_app_intact(client):
    r = await client.post(
        "/echo", content=b'{"a": 1}', headers={"content-type": "application/json", CORRELATION_HEADER: "req-1"}
    )
    assert r.status_code == 200 and r.json() == {"length": 8, "body": '{"a": 1}'}
    assert r.headers[CORRELATION_HEADER] == "req-1"


async def test_a_body_over_the_limit_is_refused_even_without_a_content_length(client):
    async def chunks():  # streamed: no Content-Length, so only counting the bytes can catch it
        for _ in range(5):
            yield b"x" * 30

    r = await client.post("/echo", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "larger than 100 bytes" in r.json()["error"]
    assert r.headers[CORRELATION_HEADER]  # one was made up for the request
    r = await client.post("/echo", content=b"x" * 101, headers={"content-type": "application/json"})
    assert r.status_code == 413


async def test_another_content_type_is_refused_and_nul_in_the_url_too(client):
    r = await client.post("/echo", content=b"a=1", headers={"content-type": "text/plain"})
    assert r.status_code == 415 and "'text/plain'" in r.json()["error"]
    r = await client.get("/echo?q=%00")
    assert r.status_code == 400 and "NUL" in r.json()["error"]
