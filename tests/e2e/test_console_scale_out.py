"""The console is stateless behind a load balancer (issue 22): two console processes on their own
ports and the same database, as two instances behind one address would be. What one console
begins, the other continues:

- a session signed in through one is signed in on the other, and signing out on either ends it on both;
- a form's CSRF token issued by one is accepted by the other (the session's, and the sign-in
  form's double-submit cookie), and a wrong one is refused by both;
- sign-in throttling counts the failed attempts made on both: 3 on one and 2 on the other lock
  the account out from that address on each (5 per account and address, services/console/domain.py).

Local console accounts (CONSOLE_LOCAL_ACCOUNTS) sign in with a form, so plain HTTP drives it."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from services.console import handlers
from services.console.api.sessions import SESSION_COOKIE
from services.console.domain import MAX_FAILED_SIGN_INS
from services.runtime.settings import SERVICES

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"
CONSOLES = ("console-a", "console-b")


@pytest.fixture(scope="module")
def consoles(stack):
    """The URLs of two console processes sharing the stack's database."""
    env = {
        "CONSOLE_LOCAL_ACCOUNTS": "true",
        "CONSOLE_COOKIE_SECURE": "false",  # plain HTTP on loopback
        **{f"CONSOLE_{name.upper()}_URL": stack.url(name) for name in SERVICES},
    }
    try:
        for name in CONSOLES:
            stack.start(name, "console", env=env)
        for name in CONSOLES:
            stack.wait_ready(name, timeout=240)  # a loaded 2-core machine starts slowly
        yield [stack.url(name) for name in CONSOLES]
    finally:
        for name in CONSOLES:
            if name in stack.procs and stack.procs[name].poll() is None:
                stack.stop(name)


def add_account(stack, username: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "services.cli.main", "staff", "add", username, "--name", "Scale Out", "--role", "admin"],
        env=stack.env | {"HOMECARE_STAFF_PASSWORD": PASSWORD},
        cwd=REPO,
        check=True,
        capture_output=True,
    )


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, f"no CSRF token on {page.request.url}"
    return found.group(1)


async def sign_in(console: str, cookies: httpx.Cookies, token: str, username: str, password: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=console, cookies=cookies, timeout=10) as c:
        return await c.post("/sign-in", data={"csrf_token": token, "username": username, "password": password})


async def test_a_session_and_its_forms_begun_on_one_console_carry_on_on_the_other(stack, consoles):
    a, b = consoles
    username = f"scale-{uuid.uuid4().hex[:8]}"
    add_account(stack, username)
    async with httpx.AsyncClient(base_url=a, timeout=10) as on_a, httpx.AsyncClient(base_url=b, timeout=10) as on_b:
        # The sign-in form from A (its double-submit cookie and token), posted to B.
        form = await on_a.get("/sign-in")
        on_b.cookies.update(on_a.cookies)  # the browser sends A's double-submit cookie to B
        signed = await on_b.post(
            "/sign-in", data={"csrf_token": csrf_of(form), "username": username, "password": PASSWORD}
        )
        assert signed.status_code == 303, signed.text
        session = {SESSION_COOKIE: signed.cookies[SESSION_COOKIE]}
        for console in (on_a, on_b):
            console.cookies.clear()
            console.cookies.update(session)

        # Signed in through B, the session is A's as well: the same page, with the signed-in menu.
        home = (await on_b.get("/")).headers["location"]
        page_a, page_b = await on_a.get(home), await on_b.get(home)
        assert page_a.status_code == page_b.status_code == 200
        assert "Sign out" in page_a.text and "Sign out" in page_b.text

        # A form's token from A is accepted by B; a wrong one is refused by both.
        token = csrf_of(page_a)
        for console in (on_a, on_b):
            wrong = await console.post("/sign-out", data={"csrf_token": "not-" + token})
            assert wrong.status_code == 403, wrong.text
        out = await on_b.post("/sign-out", data={"csrf_token": token})
        assert out.status_code == 303 and out.headers["location"].startswith("/sign-in"), out.text
        # Signed out on B, the session is over on A too.
        after = await on_a.get(home)
        assert after.status_code == 303 and after.headers["location"].startswith("/sign-in")


async def test_sign_in_throttling_counts_the_attempts_made_on_both_consoles(stack, consoles):
    a, b = consoles
    username = f"scale-{uuid.uuid4().hex[:8]}"
    add_account(stack, username)
    async with httpx.AsyncClient(base_url=a, timeout=10) as on_a:
        cookies, token = on_a.cookies, csrf_of(await on_a.get("/sign-in"))
        on_each = {a: 3, b: MAX_FAILED_SIGN_INS - 3}  # neither reaches the limit alone
        for console, failures in on_each.items():
            for _ in range(failures):
                failed = await sign_in(console, cookies, token, username, "not the password at all")
                assert failed.status_code == 400 and handlers.TOO_MANY not in failed.text, failed.text
        # Together they do: the right password is refused now, on each console.
        for console in (a, b):
            refused = await sign_in(console, cookies, token, username, PASSWORD)
            assert refused.status_code == 400, refused.text
            assert handlers.TOO_MANY in refused.text
            assert SESSION_COOKIE not in refused.cookies
