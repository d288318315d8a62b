"""The console's pages (server-rendered, GOV.UK Design System), one module per kind of user:

- :mod:`.brokers`: the brokerage team's board, package form, package pages and actions;
- :mod:`.reviews`: the review queue and a package's review form (decision record 0088);
- :mod:`.safeguarding`: raising a concern from a package page; the safeguarding queue and concerns;
- :mod:`.operations`: operations' live stream, lag, dead letters and KPIs;
- :mod:`.admin`: staff accounts;
- :mod:`.quality`: the contracts and quality team's register, CQC import and market reports;
- :mod:`.finance`: the finance team's weekly commitment and import file (decision record 0109);
- :mod:`.joining`: applications to join the framework and their due diligence (contracts and quality);
- :mod:`.oversight`: the disclosure log, rate cards and approval limits (read-only);
- :mod:`.portal`: the provider portal, on the providers service's provider-scoped API;

and what they share: :mod:`.sign_in` (signing in and out, staff and providers), :mod:`.sessions`
(sessions, permissions, CSRF), :mod:`.pages` (templates, menu) and :mod:`.errors` (error pages).

Every page needs a session with the right permission (domain.PERMISSIONS); every form carries
the session's CSRF token, checked before anything else is read from it. The sign-in forms,
which come before any session, use a double-submit cookie instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter

from services.console.api import (
    admin,
    brokers,
    finance,
    joining,
    operations,
    oversight,
    portal,
    providers_admin,
    quality,
    reviews,
    safeguarding,
    sign_in,
)
from services.console.api.sessions import Sessions

if TYPE_CHECKING:
    from services.console.app import Console


def build_router(console: Console) -> APIRouter:
    """Every page of the console. ``console`` carries the pool, the session policy, the service
    clients and the Kafka bootstrap."""
    sessions = Sessions(console)
    router = APIRouter(include_in_schema=False)
    # reviews before brokers: its POST /packages/{id}/funding before the brokers' /packages/{id}/{action}.
    # safeguarding before brokers too: its POST /packages/{id}/concern.
    for pages in (
        sign_in,
        reviews,
        safeguarding,
        brokers,
        operations,
        admin,
        providers_admin,
        quality,
        portal,
        joining,
        finance,
        oversight,
    ):
        router.include_router(pages.router(console, sessions))
    return router
