"""Web console bootstrap: ``python -m services.console``.

HTTP: server-rendered pages (FastAPI + Jinja2, GOV.UK Design System). Staff sign in through the
identity provider (OpenID Connect); owns only sessions and, where enabled, its own staff accounts
(schema ``console``). Calls the brokerage, providers and notifications HTTP APIs;
reads Kafka for the live event stream, lag, dead letters and KPIs (with :mod:`services.operations`,
as the ``homecare`` CLI does). Publishes no event and consumes none through the inbox.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import asyncpg
from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles

from services.console import api, domain
from services.console import repository as repo
from services.console.api import errors
from services.console.api.sessions import Sessions
from services.console.clients import Services
from services.console.oidc import OidcSignIn
from services.runtime.http import create_app
from services.runtime.logging import get_logger
from services.runtime.oidc_client import service_account
from services.runtime.outbox import unit_of_work
from services.runtime.service import Service
from services.runtime.settings import ServiceSettings, load

log = get_logger(__name__)


class ConsoleService(Service):
    """The web console's process, with its console (tests and tools use it directly)."""

    console: Console


HERE = Path(__file__).parent
ROOT = HERE.parents[1]
# govuk-frontend, installed from the npm registry by deploy/setup.sh (`npm ci`, package-lock.json).
GOVUK = ROOT / "node_modules" / "govuk-frontend" / "dist" / "govuk"

# Pages hold personal details: never cached, never framed; scripts and styles from this origin only.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class Console:
    """What the pages need: the pool (staff, sessions), the session policy, the services' APIs."""

    def __init__(self, service: Service, settings: ServiceSettings) -> None:
        self.service = service
        self.settings = settings
        self.policy = domain.SessionPolicy(
            idle=dt.timedelta(minutes=settings.session_idle_minutes),
            absolute=dt.timedelta(hours=settings.session_max_hours),
            local_accounts=settings.local_accounts,
        )
        self.oidc = OidcSignIn(settings)
        self.services = Services(
            brokerage=settings.brokerage_url,
            providers=settings.providers_url,
            notifications=settings.notifications_url,
            reporting=settings.reporting_url,
            auth=service_account(settings),
        )
        self.zones: list[dict] = []
        self.discharge: dict | None = None  # the brokerage's hospitals and pathways (decision 0120), read once
        self.health: domain.Health | None = None  # operations' health at a glance, kept for domain.HEALTH_TTL

    @property
    def pool(self) -> asyncpg.Pool:
        return self.service.pool

    def stopping(self) -> bool:
        """Long-lived responses (the event stream) end when the server is asked to stop."""
        server = self.service.server
        return self.service.stopping.is_set() or bool(server and server.should_exit)


def build(settings: ServiceSettings | None = None) -> tuple[ConsoleService, FastAPI]:
    settings = settings or load("console")
    service = ConsoleService(settings, migrations=HERE / "migrations", events=False)
    console = Console(service, settings)

    @service.in_background
    async def purge_sessions(svc: Service) -> None:
        while not svc.stopping.is_set():
            async with unit_of_work(svc.pool) as uow:
                purged = await repo.purge_expired(uow.conn)
            if purged:
                log.info("expired sessions removed", sessions=purged)
            with suppress(TimeoutError):
                await asyncio.wait_for(svc.stopping.wait(), timeout=600)

    app = create_app(
        service,
        title="Console",
        description="The web console of the home care brokerage.",
        html_forms=True,
        authenticated=False,
        uploads={"/quality/import": 64 * 1024 * 1024},  # the CQC's care directory CSV
    )
    app.include_router(api.build_router(console))
    app.mount("/assets", StaticFiles(directory=GOVUK / "assets", check_dir=False), name="govuk-assets")
    app.mount("/static/govuk", StaticFiles(directory=GOVUK, check_dir=False), name="govuk")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        if settings.cookie_secure:  # served over HTTPS: browsers are to use nothing else for a year
            response.headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
        if not request.url.path.startswith(("/static", "/assets")):
            response.headers["Cache-Control"] = "no-store"
        return response

    errors.install(app, SECURITY_HEADERS, Sessions(console).session_of)

    original_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: FastAPI) -> AsyncIterator[None]:
        async with original_lifespan(a):
            yield
        await console.services.close()

    app.router.lifespan_context = lifespan
    service.console = console  # for tests and tools
    return service, app
