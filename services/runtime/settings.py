"""Configuration from the environment, one class for all three services.

Shared variables have no prefix (``KAFKA_BOOTSTRAP_SERVERS``, ``DATABASE_URL``, ``LOG_FORMAT``);
a service's own are prefixed with its name (``BROKERAGE_HTTP_PORT``). ``DATABASE_URL`` is the
administrator's URL (used only to provision); each service connects as its own login role,
derived from it unless ``<SERVICE>_DATABASE_URL`` is given.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.runtime.outbound import OutboundPolicy
from services.runtime.ports import DEFAULT_PORTS
from services.runtime.sealing import SecretBox

# Secret settings: never logged; outside development none may be a placeholder (see startup_problems),
# and the ones this installation makes for itself must be long enough to be unguessable.
SECRET_SETTINGS = ("oidc_client_secret", "kafka_password", "db_password")
THIRD_PARTY_SECRETS = ("smtp_password", "notify_api_key")  # chosen by the mail server's or Notify's owner
# A known key, for `HOMECARE_ENVIRONMENT=development` alone: anyone can open what it sealed.
DEVELOPMENT_SECRETS_KEY = "ZGV2ZWxvcG1lbnQtb25seS1rZXktbm90LWZvci11c2U="
MIN_SECRET_LENGTH = 16

ServiceName = Literal["brokerage", "providers", "notifications", "reporting", "console"]
# The event-driven services (each consumes through the runtime's inbox, and publishes through its
# outbox; reporting publishes nothing but its dead letters).
SERVICES: tuple[ServiceName, ...] = ("brokerage", "providers", "notifications", "reporting")
# Every process that owns a schema and a login role: the services, and the web console (staff
# accounts and sessions only; it reaches the services through their HTTP APIs).
SCHEMA_OWNERS: tuple[ServiceName, ...] = (*SERVICES, "console")
# Defaults of one service that differ from every other's; its environment variables still win.
# The reporting service is a projection that nobody waits on event by event, so its fetches wait
# for fuller batches: fewer transactions and offset commits a package (decision 0136: about a
# third of its CPU in the benchmark's burst). Freshness stays within a second or so.
SERVICE_DEFAULTS: dict[str, dict[str, Any]] = {
    "reporting": {
        "consumer_fetch_min_bytes": 256 * 1024,
        "consumer_fetch_max_wait_ms": 1000,
        "consumer_batch_size": 500,
    },
}
INTERNAL_PORT_OFFSET = 1000  # the internal listener's default port: 9001-9005

# The local processes started by deploy/kafka.sh and deploy/postgres.sh (same port variables).
LOCAL_KAFKA = f"127.0.0.1:{os.environ.get('HOMECARE_KAFKA_PORT', '19092')}"
LOCAL_DATABASE = f"postgresql://postgres@127.0.0.1:{os.environ.get('HOMECARE_PG_PORT', '15432')}/homecare"
ROOT = Path(__file__).resolve().parents[2]


def local_kafka_identity(principal: str, bootstrap: str) -> dict[str, Any] | None:
    """The Kafka settings with which ``principal`` signs in to the local broker that
    deploy/kafka.sh runs, when ``bootstrap`` is that broker and it is secured: its credentials
    file (``.run/kafka/credentials.env``, mode 600, or ``HOMECARE_KAFKA_CREDENTIALS``) names the
    broker and holds each principal's password. None for any other cluster or an open broker."""
    run_dir = Path(os.environ.get("HOMECARE_RUN_DIR") or ROOT / ".run")
    path = Path(os.environ.get("HOMECARE_KAFKA_CREDENTIALS") or run_dir / "kafka" / "credentials.env")
    try:
        protocol = (path.parent / "protocol").read_text().strip()
        lines = path.read_text().splitlines()
    except OSError:
        return None
    values = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    password = values.get(f"HOMECARE_KAFKA_{principal.upper()}_PASSWORD")
    if protocol == "PLAINTEXT" or values.get("HOMECARE_KAFKA_BOOTSTRAP") != bootstrap or password is None:
        return None
    identity: dict[str, Any] = {
        "kafka_security_protocol": protocol,
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_username": principal,
        "kafka_password": password,
    }
    if principal == "console":  # its replay of a dead letter writes as the ops principal
        identity["kafka_replay_password"] = values.get("HOMECARE_KAFKA_OPS_PASSWORD")
    return identity


def _kafka_identity_given(prefix: str = "") -> bool:
    """True when the environment says how to reach Kafka securely: it then wins over the local
    broker's credentials."""
    return any(f"{p}KAFKA_{name}" in os.environ for p in {"", prefix} for name in ("SECURITY_PROTOCOL", "PASSWORD"))


def _local_passwords_file() -> Path:
    return Path(os.environ.get("HOMECARE_RUN_DIR") or ROOT / ".run") / "postgres" / "passwords.env"


def is_local_cluster(database_url: str) -> bool:
    """Whether the URL is the project's own PostgreSQL (deploy/postgres.sh)."""
    parts = urlsplit(database_url)
    return parts.hostname in ("127.0.0.1", "localhost") and str(parts.port) == os.environ.get(
        "HOMECARE_PG_PORT", "15432"
    )


def remember_local_password(role: str) -> str:
    """A new random password for ``role`` on the local cluster, added to its passwords file (mode 600)."""
    path = _local_passwords_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as file:
        file.write(f"{role.upper()}_DB_PASSWORD={password}\n")
    return password


def local_db_passwords() -> dict[str, str]:
    """The service roles' passwords that deploy/postgres.sh generated for the local cluster
    (``<run dir>/postgres/passwords.env``, mode 600: ``BROKERAGE_DB_PASSWORD=...``); empty
    when there is no local cluster. The local cluster checks them with scram-sha-256."""
    path = _local_passwords_file()
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def role_password(role: str, database_url: str) -> str | None:
    """A role's password: ``<ROLE>_DB_PASSWORD`` from the environment, else the local cluster's
    generated one when ``database_url`` is that cluster."""
    key = f"{role.upper()}_DB_PASSWORD"
    if os.environ.get(key):
        return os.environ[key]
    return local_db_passwords().get(key) if is_local_cluster(database_url) else None


class SharedSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    # production (the default): a service refuses to start with a missing or default secret;
    # development: it starts, says what is wrong, and seals secrets with a published key.
    # Read from HOMECARE_ENVIRONMENT.
    environment: Literal["development", "production"] = Field(
        default="production", validation_alias=AliasChoices("homecare_environment", "environment")
    )
    # The sandbox (docs/guide/sandbox.md, decision 0116): a deployment of the same services on a
    # namespace and database of their own, for providers' developers to build against. Test offers
    # can be triggered there (POST /me/sandbox/offers), and nothing reaches real people: the
    # notifications service refuses to start with an outside channel configured and sends every
    # email, GOV.UK Notify email or text to the log instead. Read from HOMECARE_SANDBOX.
    sandbox: bool = Field(default=False, validation_alias=AliasChoices("homecare_sandbox", "sandbox"))
    # Fernet keys sealing secrets at rest (services/runtime/sealing.py), comma-separated; the first seals.
    secrets_keys: str = ""

    kafka_bootstrap_servers: str = LOCAL_KAFKA
    kafka_replication_factor: int = 1
    # Partitions of each topic, set where a topic is created: the most instances of one service
    # that consume at once (an instance beyond it waits as a standby). Kafka can add partitions
    # but never remove them, and adding them moves keys, so a package's events could be read out
    # of order while the old partitions drain: choose it before the first start (decision 0115,
    # docs/guide/kubernetes.md).
    kafka_partitions: int = Field(default=6, ge=1, le=1000)
    # The outbox's buckets: the most relays of one service that publish at once (decision 0081).
    # Every instance of a service must use the same count; change it with all of them stopped.
    outbox_buckets: int = Field(default=16, ge=1, le=1024)
    # How long each topic keeps its records (retention.ms), set on the topic where it is created
    # and by `homecare kafka acls` (docs/guide/retention.md, docs/decisions/0080). The decision log
    # of a package - its lifecycle and the providers' answers - and the confirmations default to
    # seven years: six complete financial years after the last change (the Limitation Act 1980's
    # six years for contract claims, as councils' retention schedules keep commissioning and
    # contract records), plus the current one. Dead letters wait a year for a replay. 0 or less:
    # kept forever. The registry is compacted (each provider's latest profile, always kept).
    kafka_retention_packages_days: float = 2557
    kafka_retention_answers_days: float = 2557
    # Service agreement records (decision 0109): financial records, kept as long as the decision log.
    kafka_retention_service_agreements_days: float = 2557
    kafka_retention_confirmations_days: float = 2557
    kafka_retention_dead_letters_days: float = 365
    # A secured cluster (deploy/kafka/server-sasl.properties): SASL/SCRAM, one principal per
    # service (``<SERVICE>_KAFKA_USERNAME`` - default the service's name - and
    # ``<SERVICE>_KAFKA_PASSWORD``); unprefixed ``KAFKA_USERNAME``/``KAFKA_PASSWORD`` are the
    # operator's identity for the CLI.
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    kafka_username: str | None = None
    kafka_password: str | None = None
    database_url: str = LOCAL_DATABASE
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"
    # Identity (docs/guide/security.md): the OpenID Connect issuer whose access tokens every API
    # accepts (the local Keycloak realm, or the council's Entra ID / other issuer); its signing keys
    # from OIDC_JWKS_URL, else from its discovery document. Unset, every authenticated call is refused.
    oidc_issuer: str | None = None
    oidc_jwks_url: str | None = None
    # Where a token's roles are: Keycloak's realm roles; Entra ID's app roles are "roles".
    oidc_roles_claim: str = "realm_access.roles"
    # Where a provider staff user's token says which provider they work for (decision 0165): an
    # attribute the council's administrators set on the account (Keycloak: a user-profile attribute
    # and a mapper; Entra ID: an extension attribute or a directory schema extension claim).
    oidc_provider_claim: str = "provider_id"
    oidc_leeway_seconds: float = 30.0  # clock skew tolerated on exp/nbf/iat
    # The console's service account, the only one that may act for a signed-in staff member.
    oidc_console_client_id: str = "console"
    # This process's own client (client credentials) for calling other services' APIs:
    # <SERVICE>_OIDC_CLIENT_ID / <SERVICE>_OIDC_CLIENT_SECRET.
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None
    # Outbound webhooks (services/runtime/outbound.py): HTTPS only and public addresses only,
    # unless these say otherwise - for development and the tests' local receivers, never production.
    outbound_allow_http: bool = False
    outbound_allowed_networks: str = ""  # comma-separated CIDRs, e.g. "127.0.0.0/8"

    def secret_box(self) -> SecretBox:
        """The sealer for secrets at rest; in development without keys, the published development key."""
        keys = self.secrets_keys.split(",") if self.secrets_keys.strip() else []
        if not keys and self.environment == "development":
            keys = [DEVELOPMENT_SECRETS_KEY]
        return SecretBox(keys)

    def startup_problems(self) -> list[str]:
        """What makes this configuration unsafe to run outside development, one line each.

        A service started with ``environment=production`` (the default) refuses to start while
        this list is not empty; in development it logs each line as a warning."""
        problems = []
        if not self.secrets_keys.strip():
            problems.append("SECRETS_KEYS is not set: secrets at rest cannot be sealed")
        elif DEVELOPMENT_SECRETS_KEY in self.secrets_keys:
            problems.append("SECRETS_KEYS holds the published development key")
        for name in SECRET_SETTINGS + THIRD_PARTY_SECRETS:
            value = getattr(self, name, None)
            if value is None:
                continue
            if value.lower().startswith(("change-me", "changeme")):
                problems.append(f"{name} is still the placeholder value")
            elif name in SECRET_SETTINGS and len(value) < MIN_SECRET_LENGTH:
                problems.append(f"{name} is shorter than {MIN_SECRET_LENGTH} characters")
        return problems

    def outbound_policy(self) -> OutboundPolicy:
        """Where this process's webhooks may go (services/runtime/outbound.py)."""
        return OutboundPolicy.from_settings(self.outbound_allow_http, self.outbound_allowed_networks.split(","))


class ServiceSettings(SharedSettings):
    """Settings of one service; read with :func:`load`."""

    service: ServiceName
    # The audience this service's API accepts (default: the service's name, as in the realm).
    oidc_audience: str | None = None
    http_host: str = "127.0.0.1"
    http_port: int = 0
    # The internal listener: health, readiness and metrics without a token, for probes and
    # Prometheus, never published (docs/security.md). Default: the API port + 1000.
    internal_host: str = "127.0.0.1"
    internal_port: int = 0
    service_database_url: str | None = None
    # The console's replay of a dead letter puts its bytes back on their original topic, which
    # its own (read-only) principal may not write: it does so as this principal, when given.
    kafka_replay_username: str = "ops"
    kafka_replay_password: str | None = None
    db_password: str | None = None
    db_pool_size: int = 10
    # Connections of the consumers and the outbox relay, apart from the HTTP API's and the timers'.
    db_pipeline_pool_size: int = 3
    # Relay: how often an idle relay looks for new outbox rows, and how many it takes at once.
    # The outbox relay is woken by PostgreSQL when rows are committed (LISTEN/NOTIFY, decision
    # 0137) and then looks again only every relay_idle_poll_seconds when idle; without its LISTEN
    # connection it polls every relay_poll_seconds.
    relay_poll_seconds: float = 0.05
    relay_idle_poll_seconds: float = Field(default=1.0, gt=0, le=10)
    # Woken by a commit while commits come often, how long the relay waits for the commits behind
    # it before reading (a fuller batch; at most this much latency a hop; 0: never). 25 ms: in
    # the benchmark, 6% less CPU a package at 50 req/s and 11% less in the burst (decision 0147).
    relay_gather_seconds: float = Field(default=0.025, ge=0, le=1)
    relay_batch_size: int = 200
    # Published outbox rows are kept this long (for inspection), then deleted.
    outbox_retention_seconds: int = 3600
    # Consumers: transient failures (PostgreSQL away) retry with capped, jittered exponential
    # backoff until they succeed; other handler errors get this many attempts, then dead letters.
    consumer_max_attempts: int = 3
    # ...and the transient waiting is bounded too: after this long the event is dead-lettered
    # (kept under Kafka's max.poll.interval of 300 s, past which the group would evict us).
    consumer_transient_give_up_seconds: float = 240.0
    consumer_backoff_initial_seconds: float = 0.2
    consumer_backoff_max_seconds: float = 15.0
    # Consumers apply up to this many messages in one transaction and commit their offsets once.
    consumer_batch_size: int = 100
    # How long an idle consumer's poll waits for records; it returns at the first (decision 0163).
    consumer_poll_wait_ms: int = Field(default=1000, ge=10, le=10_000)
    # A fetch waits until this many bytes are there or this long has passed. Kafka's defaults
    # (answer as soon as anything arrives; an idle consumer asks twice a second) measured as well
    # under load as fuller fetches (64 kB or 20 ms) and cost far less when idle.
    consumer_fetch_min_bytes: int = 1
    consumer_fetch_max_wait_ms: int = 500
    # Group membership with several instances (docs/guide/kubernetes.md): a dead instance's
    # partitions move to the live ones once the broker has missed its heartbeats this long (a
    # smaller value moves them sooner and risks evicting a consumer in a long pause). With a group
    # instance id - static membership, a stable name per instance such as a StatefulSet pod's -
    # an instance restarted within the session timeout takes its partitions back without making
    # the others rebalance. Each instance's id must differ from every other's.
    consumer_session_timeout_ms: int = 10_000
    consumer_heartbeat_interval_ms: int = 3_000
    consumer_group_instance_id: str | None = None
    # A dead letter is cut to this many bytes (value first; an excerpt, the size and SHA-256 of
    # the original kept) so it fits under Kafka's default limit of 1 MiB a record.
    dead_letter_max_bytes: int = 1_000_000
    # How long the producer (the relay) waits to fill a request with more events.
    kafka_linger_ms: int = 2
    # Python's cyclic garbage collector (decision 0142): once the service is built, what is alive
    # is frozen out of every collection (gc.freeze), and the youngest generation is collected after
    # this many more container objects were made than freed (Python's default: 700). 0 leaves the
    # collector as Python sets it.
    gc_gen0_threshold: int = Field(default=10_000, ge=0)
    # How long shutdown may take before in-flight work is abandoned (to be redelivered).
    graceful_timeout_seconds: float = 20.0
    max_request_bytes: int = 64 * 1024
    # Offer windows by urgency, in seconds (brokerage).
    offer_window_hospital_discharge_seconds: float = 2 * 3600
    offer_window_reablement_step_down_seconds: float = 4 * 3600
    offer_window_community_seconds: float = 24 * 3600
    timer_poll_seconds: float = 0.5
    # The unplaced queue: how often an unplaced package is offered again, tiers from the top.
    reoffer_interval_seconds: float = 6 * 3600
    # Pauses and endings (brokerage; docs/guide/pauses-and-endings.md, decision 0078). How long the
    # provider keeps a paused package (hospital, respite) before it ends; whether the council pays
    # the provider for that hold; how far back and ahead an ending's or a pause's date may be.
    pause_hold_seconds: float = 14 * 24 * 3600
    pause_hold_paid: bool = True
    ending_backdate_limit_days: int = 28
    ending_ahead_limit_days: int = 90
    # Changes to a running package (brokerage; docs/guide/package-changes.md, decision 0082): how long
    # the provider holding a package has to accept or decline a change before it is re-brokered.
    change_window_seconds: float = 48 * 3600
    # Reviews (brokerage; docs/guide/reviews-and-funding.md, decision 0088): the first review falls due
    # this many days after care starts (six weeks), then this many calendar months after each review
    # (yearly); the review queue shows those due within the due-soon days, and every overdue one.
    review_first_after_days: int = Field(default=42, ge=1, le=366)
    review_interval_months: int = Field(default=12, ge=1, le=36)
    review_due_soon_days: int = Field(default=14, ge=0, le=120)
    # Hospital discharge (brokerage; docs/guide/hospital-discharge.md, decision 0097): how far ahead and
    # back the medically-fit date may be, and when a discharge still unplaced goes to the council's
    # in-house fallback: this long after the UK midnight starting the medically-fit day (36 h: noon on
    # day 1), never sooner than one hospital-discharge offer window after the request.
    discharge_medically_fit_ahead_days: int = Field(default=14, ge=0, le=90)
    discharge_medically_fit_backdate_days: int = Field(default=28, ge=0, le=365)
    discharge_fallback_after_seconds: float = Field(default=36 * 3600, ge=0)
    ending_poll_seconds: float = 30.0  # providers: how often endings dated ahead are looked for
    brokerage_url: str = "http://127.0.0.1:8001"
    # Webhook adapters (providers): offers POSTed to providers' systems from the deliveries table,
    # retried with capped, jittered exponential backoff until delivered or the offer window closes.
    webhook_poll_seconds: float = 0.5
    webhook_timeout_seconds: float = 10.0  # any webhook a service sends (offers, notifications)
    webhook_backoff_initial_seconds: float = 1.0
    webhook_backoff_max_seconds: float = 300.0
    webhook_max_attempts: int = 20
    # Notifications: channels. A channel is usable only when configured here (email needs an
    # SMTP host, GOV.UK Notify an API key); ``log`` and ``webhook`` need nothing.
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_cert_bundle: str | None = None  # CA certificates for the server's TLS certificate (default: the system's)
    smtp_from: str = "Home care brokerage <no-reply@brokerage.example.org>"
    smtp_timeout_seconds: float = 15.0
    notify_api_key: str | None = None
    notify_base_url: str = "https://api.notifications.service.gov.uk"
    notify_email_template_id: str | None = None  # a Notify template with ((subject)) and ((body))
    notify_sms_template_id: str | None = None  # a Notify template with ((body))
    notify_template_ids: dict[str, str] = {}  # per message and channel, e.g. {"placement_person.notify_email": "..."}
    notify_timeout_seconds: float = 15.0
    # Notifications: the dispatcher sending what the consumer committed.
    dispatch_poll_seconds: float = 0.2
    dispatch_batch_size: int = 50
    delivery_max_attempts: int = 8
    delivery_backoff_initial_seconds: float = 2.0
    delivery_backoff_max_seconds: float = 600.0
    delivery_lease_seconds: float = 120.0  # a claimed delivery whose sender died is tried again after this
    contact_grace_seconds: float = 3600.0  # how long a message waits for its recipient's contact to be registered
    # The channel seeded providers and brokers get (deploy/reference/contacts.yaml): the seed holds
    # email addresses only, so a channel needing a mobile or a webhook is refused at start-up.
    seed_channel: Literal["log", "email", "notify_email"] = "log"
    # Web console: the services' HTTP APIs it is a client of (and brokerage_url above), and its sessions.
    # The providers service's address is also the provider API's in the award's link (notifications).
    providers_url: str = "http://127.0.0.1:8002"
    notifications_url: str = "http://127.0.0.1:8003"
    reporting_url: str = "http://127.0.0.1:8005"
    session_idle_minutes: float = 30
    session_max_hours: float = 12
    # A session begun at the identity provider is checked with it again at most this often (its refresh
    # token exchanged): disabled there, signed out there, or another role or provider, and it ends
    # (decision 0166). 0: on every request.
    idp_recheck_seconds: float = Field(default=60, ge=0, le=3600)
    # The console's cookies are Secure (sent over HTTPS only) and it sends HSTS, by default; set
    # CONSOLE_COOKIE_SECURE=false only to serve it over plain HTTP on loopback (the demo, the tests).
    cookie_secure: bool = True
    # Staff sign in to the console through the identity provider (OIDC_ISSUER, the console's client
    # CONSOLE_OIDC_CLIENT_ID/_SECRET): authorization code with PKCE, docs/guide/console-sign-in.md.
    # The button says "Sign in with <oidc_provider_name>"; the scopes asked for; the console's address
    # as browsers reach it (the redirect URI is <public_url>/sign-in/callback; unset, the address the
    # request came to - set it behind a proxy).
    oidc_provider_name: str = "your council account"
    oidc_scopes: str = "openid profile"
    public_url: str | None = None
    # The console's own password accounts (CONSOLE_LOCAL_ACCOUNTS=true), for an installation
    # without an identity provider: off by default.
    local_accounts: bool = False

    def sandbox_problems(self) -> list[str]:
        """In the sandbox (``HOMECARE_SANDBOX=true``), the settings that could reach a real person,
        one line each: an SMTP server or a GOV.UK Notify key. A service refuses to start while this
        list is not empty, in every environment (decision 0116); outside the sandbox it is empty."""
        if not self.sandbox:
            return []
        problems = []
        if self.smtp_host:
            problems.append(f"{self.service.upper()}_SMTP_HOST is set ({self.smtp_host}): the sandbox sends no email")
        if self.notify_api_key:
            problems.append(
                f"{self.service.upper()}_NOTIFY_API_KEY is set: the sandbox sends nothing through GOV.UK Notify"
            )
        return problems

    @property
    def role(self) -> str:
        return self.service

    @property
    def service_dsn(self) -> str:
        """The service's own connection: same server and database, its own login role."""
        if self.service_database_url:
            return self.service_database_url
        parts = urlsplit(self.database_url)
        host = parts.hostname or "127.0.0.1"
        port = f":{parts.port}" if parts.port else ""
        password = f":{self.db_password}" if self.db_password else ""
        return urlunsplit((parts.scheme, f"{self.role}{password}@{host}{port}", parts.path, parts.query, ""))


def load(service: ServiceName, **overrides: Any) -> ServiceSettings:
    """Shared variables unprefixed, then ``<SERVICE>_...`` variables for this service."""

    class _Prefixed(ServiceSettings):
        model_config = SettingsConfigDict(env_prefix=f"{service.upper()}_", extra="ignore")

    # A service's own variable wins over the shared one of the same name (PROVIDERS_KAFKA_USERNAME
    # over KAFKA_USERNAME).
    prefix = f"{service.upper()}_"
    shared = {k: v for k, v in SharedSettings().model_dump().items() if prefix + k.upper() not in os.environ}
    # A service default gives way to the variables that would set the field: the prefixed one, and
    # the unprefixed one only for a shared field (a service field reads no unprefixed variable).
    defaults = {
        k: v
        for k, v in SERVICE_DEFAULTS.get(service, {}).items()
        if prefix + k.upper() not in os.environ and not (k in SharedSettings.model_fields and k.upper() in os.environ)
    }
    own = _Prefixed(**({"service": service} | shared | defaults | overrides))
    values = own.model_dump()
    if not values["http_port"]:
        values["http_port"] = DEFAULT_PORTS[service]
    if not values["internal_port"]:
        values["internal_port"] = values["http_port"] + INTERNAL_PORT_OFFSET
    if not values["db_password"] and not values["service_database_url"]:
        values["db_password"] = role_password(service, values["database_url"])
    if not _kafka_identity_given(prefix) and not {"kafka_security_protocol", "kafka_password"} & overrides.keys():
        values |= local_kafka_identity(service, values["kafka_bootstrap_servers"]) or {}
    return ServiceSettings.model_validate(values)


def admin_settings(kafka_bootstrap_servers: str | None = None) -> SharedSettings:
    """The operator's settings (the CLI's tools, provisioning, tests): from the environment or,
    on the local secured broker, as its administrator. ``kafka_bootstrap_servers``: another
    cluster than the environment's."""
    settings = SharedSettings()
    if kafka_bootstrap_servers:
        settings = settings.model_copy(update={"kafka_bootstrap_servers": kafka_bootstrap_servers})
    if not _kafka_identity_given():
        identity = local_kafka_identity("admin", settings.kafka_bootstrap_servers)
        if identity:
            settings = settings.model_copy(update=identity)
    return settings
