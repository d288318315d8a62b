"""The permission model: which roles may call which operation, for every service, in one table.

The roles are the identity provider's realm roles (deploy/keycloak/realm-homecare.json; a council's
own issuer maps its groups to the same names):

============== =====================================================================================
broker         the brokerage team: requests packages, acts on them, reads the person's details
senior_broker  a broker with a higher limit in the scheme of delegation
manager        the team's manager: a broker's rights, a higher limit, the disclosure log
head_of_service approves above-rate spending beyond the managers' limit
operations     runs the platform: packages' progress and deliveries, never persons or prices
council_admin  manages the framework's providers (status, adapters, credentials, coverage)
provider_staff a provider's named staff user: the provider API (``/me``) for the organisation whose user
               they are in the providers service (decision 0126), like its API credential
contracts_quality the contracts and quality team: the provider quality and risk register, due diligence
safeguarding   the safeguarding team: the only role that reads safeguarding concerns
finance        the finance team: service agreement records and commitment reports
review_officer the review team: the reviews queue and review outcomes
service:<id>   a service's own account (client credentials), by its client id
============== =====================================================================================

:func:`rule_for` is consulted by :mod:`services.runtime.auth` for every request: a route that is not
in the table is refused. ``tests/e2e/test_authorization.py`` calls every operation of every
service's OpenAPI document with a token of each role and expects exactly this table's answer, and
fails for an operation missing here. docs/guide/security.md shows the table as role x action.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

BROKER = "broker"
SENIOR_BROKER = "senior_broker"
MANAGER = "manager"
HEAD_OF_SERVICE = "head_of_service"
OPERATIONS = "operations"
COUNCIL_ADMIN = "council_admin"
PROVIDER_STAFF = "provider_staff"
# Issue 21's teams and issue 18's review officers (decision 0096).
CONTRACTS_QUALITY = "contracts_quality"
SAFEGUARDING = "safeguarding"
FINANCE = "finance"
REVIEW_OFFICER = "review_officer"

# People's roles, in the order the documentation shows them.
STAFF_ROLES: Final = (
    BROKER,
    SENIOR_BROKER,
    MANAGER,
    HEAD_OF_SERVICE,
    OPERATIONS,
    COUNCIL_ADMIN,
    PROVIDER_STAFF,
    CONTRACTS_QUALITY,
    SAFEGUARDING,
    FINANCE,
    REVIEW_OFFICER,
)

BROKERAGE_TEAM = frozenset({BROKER, SENIOR_BROKER, MANAGER, HEAD_OF_SERVICE})
FOLLOWS_WORK = BROKERAGE_TEAM | {OPERATIONS, COUNCIL_ADMIN}
QUALITY_TEAM = frozenset({CONTRACTS_QUALITY})  # changes the quality and risk register
FINANCE_READERS = frozenset({FINANCE, MANAGER, HEAD_OF_SERVICE})
CONSOLE = "service:console"  # the web console's own account (e.g. the zones for its forms)
# Who commissions the market: the commissioners' reports (market share, declines, quality, gaps).
COMMISSIONERS = frozenset({OPERATIONS, MANAGER, HEAD_OF_SERVICE, COUNCIL_ADMIN, CONTRACTS_QUALITY})


class _Marker(frozenset):
    """A rule that is not a set of roles (compared by identity)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __new__(cls, name: str) -> _Marker:  # frozenset takes its items in __new__: none here
        return super().__new__(cls)

    def __repr__(self) -> str:
        return self.name


PUBLIC: Final = _Marker("PUBLIC")  # no token: the AsyncAPI document
# Health, readiness and metrics: no token on the service's internal listener (probes, Prometheus);
# on the API port, any valid token of this service's audience (docs/security.md).
INTERNAL: Final = _Marker("INTERNAL")
# The provider API: each provider's own credential (hcp_...), or a provider_staff token of one of its
# named users (decision 0126), checked by the providers service; ``/me/users`` only for its admin users.
PROVIDER_CREDENTIAL: Final = _Marker("PROVIDER_CREDENTIAL")
# How a provider's own credential begins (``hcp_<credential id>_<secret>``: services/providers/domain.py):
# what tells it from a staff token before the providers service checks it against its store.
PROVIDER_TOKEN_PREFIX: Final = "hcp_"

# On every service. Probes and scrapers carry no token: they use the internal listener.
_OPERATIONS_ENDPOINTS: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/health/live"): INTERNAL,
    ("GET", "/health/ready"): INTERNAL,
    ("GET", "/metrics"): INTERNAL,
    ("GET", "/asyncapi.json"): PUBLIC,
}

TABLE: Final[dict[str, dict[tuple[str, str], frozenset[str]]]] = {
    "brokerage": {
        ("POST", "/packages"): BROKERAGE_TEAM,
        ("GET", "/packages"): FOLLOWS_WORK,
        ("GET", "/packages/{package_id}"): FOLLOWS_WORK | {REVIEW_OFFICER},
        # The decision record ranks every bid with its price: commercial data.
        ("GET", "/packages/{package_id}/explanation"): BROKERAGE_TEAM | {COUNCIL_ADMIN},
        ("POST", "/packages/{package_id}/cancel"): BROKERAGE_TEAM,
        ("POST", "/packages/{package_id}/start"): BROKERAGE_TEAM,
        ("POST", "/packages/{package_id}/reoffer"): BROKERAGE_TEAM,
        ("POST", "/packages/{package_id}/hand-back"): BROKERAGE_TEAM,
        # A running package's pauses and endings (decision 0078): the brokerage team, as for cancelling.
        ("POST", "/packages/{package_id}/end"): BROKERAGE_TEAM,
        ("POST", "/packages/{package_id}/pause"): BROKERAGE_TEAM,
        ("POST", "/packages/{package_id}/resume"): BROKERAGE_TEAM,
        # Changes to a running package (decision 0082): the brokerage team, as for pauses and endings.
        ("POST", "/packages/{package_id}/changes"): BROKERAGE_TEAM,
        # Reviews (decision 0088): the brokerage team records them (a council's review officers sign in
        # as brokers); the queue is work to follow, like the board.
        ("POST", "/packages/{package_id}/reviews"): BROKERAGE_TEAM | {REVIEW_OFFICER},
        ("GET", "/reviews"): FOLLOWS_WORK | {REVIEW_OFFICER},
        # Funding (decision 0089): recorded by the brokerage team; read by those who follow the work
        # (the weekly cost in pounds only for roles that see commercial data: SEES_BID_PRICES).
        ("PUT", "/packages/{package_id}/funding"): BROKERAGE_TEAM,
        ("GET", "/packages/{package_id}/funding"): FOLLOWS_WORK,
        # The hand-off to finance (decisions 0096, 0109): service agreement records (package ids, rates,
        # funders; no person's details), the import file and the weekly commitment. The finance team, and
        # the budget holders who answer for the commitment.
        ("GET", "/service-agreements"): FINANCE_READERS,
        ("GET", "/service-agreements/export"): FINANCE_READERS,
        ("GET", "/service-agreements/commitments"): FINANCE_READERS,
        # Within each role's limit in the scheme of delegation (services/runtime/delegation.py).
        ("POST", "/packages/{package_id}/exception/approve"): BROKERAGE_TEAM,
        ("POST", "/packages/{package_id}/exception/reject"): BROKERAGE_TEAM,
        ("GET", "/packages/{package_id}/person"): BROKERAGE_TEAM,
        ("GET", "/packages/{package_id}/disclosures"): frozenset({MANAGER, HEAD_OF_SERVICE, COUNCIL_ADMIN}),
        # The whole disclosure log, filtered (the console's admin page): the same readers as one package's.
        ("GET", "/disclosures"): frozenset({MANAGER, HEAD_OF_SERVICE, COUNCIL_ADMIN}),
        ("POST", "/internal/disclosures"): frozenset({"service:providers"}),
        # The sandbox's test packages (decision 0116): asked for by the providers service alone, for the
        # provider whose credential called POST /me/sandbox/offers; a 404 outside a sandbox deployment.
        ("POST", "/internal/sandbox/packages"): frozenset({"service:providers"}),
        ("GET", "/reference/zones"): FOLLOWS_WORK | {CONSOLE},
        ("GET", "/reference/providers"): FOLLOWS_WORK | {CONSOLE},
        ("GET", "/reference/rates"): FOLLOWS_WORK | {CONSOLE},
        # Every rate card with its version and start (the console's rate cards page).
        ("GET", "/reference/rate-cards"): FOLLOWS_WORK | {CONSOLE},
        # The scheme of delegation (decision 0052): the console's approval page shows the limit first.
        ("GET", "/reference/delegation"): FOLLOWS_WORK | {CONSOLE},
        # Hospital discharge (decision 0097): the hospital and ward codes, the in-house services' load.
        ("GET", "/reference/hospitals"): FOLLOWS_WORK | {CONSOLE},
    },
    "providers": {
        ("GET", "/providers"): FOLLOWS_WORK,
        ("GET", "/providers/{provider_id}"): FOLLOWS_WORK,
        ("GET", "/providers/{provider_id}/offers"): frozenset({MANAGER, HEAD_OF_SERVICE, OPERATIONS, COUNCIL_ADMIN}),
        ("PUT", "/providers/{provider_id}/adapter"): frozenset({COUNCIL_ADMIN}),
        ("PATCH", "/providers/{provider_id}/adapter"): frozenset({COUNCIL_ADMIN}),
        ("POST", "/providers/{provider_id}/credentials"): frozenset({COUNCIL_ADMIN}),
        ("GET", "/providers/{provider_id}/credentials"): frozenset({COUNCIL_ADMIN}),
        ("POST", "/providers/{provider_id}/credentials/{credential_id}/revoke"): frozenset({COUNCIL_ADMIN}),
        ("GET", "/providers/{provider_id}/deliveries"): frozenset({OPERATIONS, COUNCIL_ADMIN}),
        ("POST", "/providers/{provider_id}/status"): frozenset({COUNCIL_ADMIN}),
        ("GET", "/providers/{provider_id}/status-history"): FOLLOWS_WORK,
        ("GET", "/change-requests"): frozenset({COUNCIL_ADMIN}),
        ("POST", "/change-requests/{request_id}/approve"): frozenset({COUNCIL_ADMIN}),
        ("POST", "/change-requests/{request_id}/reject"): frozenset({COUNCIL_ADMIN}),
        # Joining the framework (decision 0112): the contracts and quality team records applications from
        # the tender portal and runs due diligence; the council's administrators read them (they issue
        # the joined provider's credential). No provider route: nothing unauthenticated writes.
        ("GET", "/applications/terms"): frozenset({CONTRACTS_QUALITY, COUNCIL_ADMIN}),
        ("GET", "/applications"): frozenset({CONTRACTS_QUALITY, COUNCIL_ADMIN}),
        ("POST", "/applications"): frozenset({CONTRACTS_QUALITY}),
        ("GET", "/applications/{application_id}"): frozenset({CONTRACTS_QUALITY, COUNCIL_ADMIN}),
        ("POST", "/applications/{application_id}/checks"): frozenset({CONTRACTS_QUALITY}),
        ("POST", "/applications/{application_id}/approve"): frozenset({CONTRACTS_QUALITY}),
        ("POST", "/applications/{application_id}/refuse"): frozenset({CONTRACTS_QUALITY}),
        ("GET", "/me"): PROVIDER_CREDENTIAL,
        ("PATCH", "/me"): PROVIDER_CREDENTIAL,
        ("GET", "/me/change-requests"): PROVIDER_CREDENTIAL,
        ("POST", "/me/change-requests"): PROVIDER_CREDENTIAL,
        ("GET", "/me/offers"): PROVIDER_CREDENTIAL,
        ("POST", "/me/offers/{package_id}/bid"): PROVIDER_CREDENTIAL,
        ("POST", "/me/offers/{package_id}/decline"): PROVIDER_CREDENTIAL,
        ("GET", "/me/packages"): PROVIDER_CREDENTIAL,
        # Changes to packages it holds (decision 0082): accepted or declined by the provider itself.
        ("GET", "/me/package-changes"): PROVIDER_CREDENTIAL,
        ("POST", "/me/package-changes/{change_id}/accept"): PROVIDER_CREDENTIAL,
        ("POST", "/me/package-changes/{change_id}/decline"): PROVIDER_CREDENTIAL,
        ("GET", "/me/packages/{package_id}/person"): PROVIDER_CREDENTIAL,
        ("GET", "/me/deliveries"): PROVIDER_CREDENTIAL,
        # Webhook self-service (decision 0100): its own delivery, URL, test offer and secret.
        ("GET", "/me/deliveries/{delivery_id}"): PROVIDER_CREDENTIAL,
        ("POST", "/me/deliveries/{delivery_id}/redeliver"): PROVIDER_CREDENTIAL,
        ("PUT", "/me/webhook"): PROVIDER_CREDENTIAL,
        ("POST", "/me/webhook/test"): PROVIDER_CREDENTIAL,
        ("POST", "/me/webhook/rotate-secret"): PROVIDER_CREDENTIAL,
        ("GET", "/me/notices"): PROVIDER_CREDENTIAL,  # how its offers closed (decision 0093)
        # The sandbox (decision 0116): a test offer of a made-up package to the caller alone; 404 elsewhere.
        ("POST", "/me/sandbox/offers"): PROVIDER_CREDENTIAL,
        # Safeguarding (decision records 0106-0108): anyone who follows the work, or a provider, raises a
        # concern; only the safeguarding team reads them, pauses a provider's new offers and records outcomes.
        ("POST", "/me/concerns"): PROVIDER_CREDENTIAL,
        # The portal's inbox and history (decision 0127) and the organisation's named users (0126):
        # /me/users for its admin users only (services/providers/domain.py can_manage_users).
        ("GET", "/me/inbox"): PROVIDER_CREDENTIAL,
        ("POST", "/me/offers/{package_id}/open"): PROVIDER_CREDENTIAL,
        ("GET", "/me/history"): PROVIDER_CREDENTIAL,
        ("GET", "/me/users"): PROVIDER_CREDENTIAL,
        ("POST", "/me/users"): PROVIDER_CREDENTIAL,
        ("POST", "/me/users/{user_id}/remove"): PROVIDER_CREDENTIAL,
        # The council's administrators manage any provider's named users (decision 0126); who answered
        # a package's offers is for the brokerage team and the administrators (the package page).
        ("GET", "/providers/{provider_id}/users"): frozenset({COUNCIL_ADMIN}),
        ("POST", "/providers/{provider_id}/users"): frozenset({COUNCIL_ADMIN}),
        ("POST", "/providers/{provider_id}/users/{user_id}/remove"): frozenset({COUNCIL_ADMIN}),
        ("GET", "/packages/{package_id}/answers"): BROKERAGE_TEAM | {COUNCIL_ADMIN},
        ("POST", "/concerns"): BROKERAGE_TEAM | {OPERATIONS, COUNCIL_ADMIN, SAFEGUARDING},
        ("GET", "/concerns"): frozenset({SAFEGUARDING}),
        ("GET", "/concerns/{concern_id}"): frozenset({SAFEGUARDING}),
        ("POST", "/concerns/{concern_id}/pause"): frozenset({SAFEGUARDING}),
        ("POST", "/concerns/{concern_id}/outcome"): frozenset({SAFEGUARDING}),
        # The quality and risk register (decision 0103): kept by the contracts and quality team. The
        # summary (codes, counts, scores) for those who follow the work; a provider's whole entry
        # (complaints' summaries, reviewers' notes) for the team and the council's administrators.
        ("GET", "/quality/register"): FOLLOWS_WORK | {CONTRACTS_QUALITY},
        ("GET", "/providers/{provider_id}/quality"): frozenset({CONTRACTS_QUALITY, COUNCIL_ADMIN}),
        ("PUT", "/providers/{provider_id}/quality/cqc"): QUALITY_TEAM,
        ("PUT", "/providers/{provider_id}/quality/cqc-location"): QUALITY_TEAM,
        ("POST", "/providers/{provider_id}/quality/risk-reviews"): QUALITY_TEAM,
        ("POST", "/providers/{provider_id}/quality/complaints"): QUALITY_TEAM,
        ("POST", "/providers/{provider_id}/quality/complaints/{complaint_id}/close"): QUALITY_TEAM,
        ("POST", "/providers/{provider_id}/quality/plans"): QUALITY_TEAM,
        ("POST", "/providers/{provider_id}/quality/plans/{plan_id}/close"): QUALITY_TEAM,
        ("POST", "/quality/cqc-imports"): QUALITY_TEAM,
        ("GET", "/quality/cqc-imports/{import_id}"): frozenset({CONTRACTS_QUALITY, COUNCIL_ADMIN}),
    },
    "notifications": {
        # Contacts are personal data: the brokerage team (families, brokers) and the council's
        # administrators (providers' contacts).
        ("PUT", "/recipients/{kind}/{recipient_id}"): BROKERAGE_TEAM | {COUNCIL_ADMIN},
        ("GET", "/recipients/{kind}/{recipient_id}"): BROKERAGE_TEAM | {COUNCIL_ADMIN},
        ("GET", "/packages/{package_id}/notifications"): FOLLOWS_WORK,
        ("GET", "/packages/{package_id}/confirmations"): FOLLOWS_WORK,
        # Failed deliveries across packages (no address, no body): operations' overview.
        ("GET", "/deliveries/failed"): frozenset({OPERATIONS, COUNCIL_ADMIN}),
    },
    "reporting": {
        # Aggregates over the period (counts, waits, hours, spend by band): the people who run and
        # commission the service, and the console's KPI page. Brokers work packages, not reports.
        ("GET", "/kpis"): frozenset({OPERATIONS, MANAGER, HEAD_OF_SERVICE, COUNCIL_ADMIN, CONSOLE}),
        # Row-level history with every bid's price (commercial data, as the decision record): the
        # council's managers and administrators (its BI team), not operations.
        ("GET", "/exports/{name}"): frozenset({MANAGER, HEAD_OF_SERVICE, COUNCIL_ADMIN}),
        # Reports for commissioners (decision 0105): aggregates by zone and provider, no prices.
        ("GET", "/reports/market-share"): COMMISSIONERS,
        ("GET", "/reports/decline-mix"): COMMISSIONERS,
        ("GET", "/reports/provider-quality"): COMMISSIONERS,
        ("GET", "/reports/coverage-gaps"): COMMISSIONERS,
        # What the council is committed to pay each provider and who pays (decision 0118): those who
        # read the finance records, and the council's administrators (who have the exports anyway).
        ("GET", "/reports/commitments"): FINANCE_READERS | {COUNCIL_ADMIN},
    },
}

# Rights within an operation's answer: commercial data only for the roles that need it.
SEES_BID_PRICES: Final = BROKERAGE_TEAM | {COUNCIL_ADMIN}


# Who may register or replace a contact, by its kind (notifications' PUT /recipients/{kind}/{id}, which
# the table lets the brokerage team and the council's administrators call). A provider's address gets
# its awards (their rates, the link to the person's details) and the brokerage team's every alert: the
# council's administrators set those (found by an attack: a broker pointed a provider's award notices
# at an address of their own). A broker's contact is their own to set (``OWN``), or a manager's.
OWN = "own"
CONTACT_WRITERS: dict[str, frozenset[str]] = {
    "person": BROKERAGE_TEAM | {COUNCIL_ADMIN},
    "broker": frozenset({OWN, MANAGER, HEAD_OF_SERVICE, COUNCIL_ADMIN}),
    "provider": frozenset({COUNCIL_ADMIN}),
    "brokerage_team": frozenset({COUNCIL_ADMIN}),
}


def may_write_contact(kind: str, recipient_id: str, actor: str, roles: frozenset[str]) -> bool:
    """Whether the caller (``actor``, with ``roles``) may set the contact of ``kind``/``recipient_id``."""
    writers = CONTACT_WRITERS.get(kind, frozenset())
    return bool(writers & roles) or (OWN in writers and recipient_id == actor and bool(roles & BROKERAGE_TEAM))


def priced(record: dict[str, Any], prices: bool) -> dict[str, Any]:
    """``record`` as a caller reads it: its ``hourly_rate`` (a bid's or an award's, pounds per hour)
    null unless ``prices`` (the caller's roles meet :data:`SEES_BID_PRICES`); the band rate is the
    published rate card's and stays. A record without the key is returned as it is."""
    return record if prices or "hourly_rate" not in record else record | {"hourly_rate": None}


def rule_for(service: str, method: str, path: str) -> frozenset[str] | None:
    """The roles allowed to call ``method path`` (the route's template) of ``service``; PUBLIC or
    PROVIDER_CREDENTIAL for the routes that take no staff token; None when the table does not name it."""
    if (method, path) in _OPERATIONS_ENDPOINTS:
        return _OPERATIONS_ENDPOINTS[(method, path)]
    return TABLE.get(service, {}).get((method, path))


def allowed(service: str, method: str, path: str, roles: frozenset[str]) -> bool:
    """Whether a staff or service token with ``roles`` may call ``method path`` on the API port."""
    rule = rule_for(service, method, path)
    if rule is INTERNAL:
        return bool(roles)  # any valid token on the API port
    if rule is None or rule is PUBLIC or rule is PROVIDER_CREDENTIAL:
        return rule is PUBLIC
    return bool(rule & roles)


def on_internal_listener(scope: Mapping[str, Any], internal_port: int) -> bool:
    """Whether a request came in on the service's internal listener (its socket's port)."""
    server = scope.get("server")
    return server is not None and server[1] == internal_port
