"""Configuration from the environment, one class for all three services.

Shared variables have no prefix (``KAFKA_BOOTSTRAP_SERVERS``, ``DATABASE_URL``, ``LOG_FORMAT``);
a service's own are prefixed with its name (``BROKERAGE_HTTP_PORT``). ``DATABASE_URL`` is the
administrator's URL (used only to provision); each service connects as its own login role,
derived from it unless ``<SERVICE>_DATABASE_URL`` is given.
"""

from __future__ import annotations

import os
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic_settings import BaseSettings, SettingsConfigDict

ServiceName = Literal["brokerage", "providers", "notifications", "console"]
# The event-driven services (each consumes and publishes through the runtime's inbox/outbox).
SERVICES: tuple[ServiceName, ...] = ("brokerage", "providers", "notifications")
# Every process that owns a schema and a login role: the services, and the web console (staff
# accounts and sessions only; it reaches the services through their HTTP APIs).
SCHEMA_OWNERS: tuple[ServiceName, ...] = (*SERVICES, "console")
DEFAULT_PORTS = {"brokerage": 8001, "providers": 8002, "notifications": 8003, "console": 8004}

# The local processes started by deploy/kafka.sh and deploy/postgres.sh (same port variables).
LOCAL_KAFKA = f"127.0.0.1:{os.environ.get('HOMECARE_KAFKA_PORT', '19092')}"
LOCAL_DATABASE = f"postgresql://postgres@127.0.0.1:{os.environ.get('HOMECARE_PG_PORT', '15432')}/homecare"


class SharedSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    kafka_bootstrap_servers: str = LOCAL_KAFKA
    kafka_replication_factor: int = 1
    database_url: str = LOCAL_DATABASE
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"


class ServiceSettings(SharedSettings):
    """Settings of one service; read with :func:`load`."""

    service: ServiceName
    http_host: str = "127.0.0.1"
    http_port: int = 0
    service_database_url: str | None = None
    db_password: str | None = None
    db_pool_size: int = 10
    # Relay: how often an idle relay looks for new outbox rows, and how many it takes at once.
    relay_poll_seconds: float = 0.05
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
    # Web console: the services' HTTP APIs it is a client of, and its sessions.
    brokerage_url: str = "http://127.0.0.1:8001"
    providers_url: str = "http://127.0.0.1:8002"
    notifications_url: str = "http://127.0.0.1:8003"
    session_idle_minutes: float = 30
    session_max_hours: float = 12
    # Set where the console is served over HTTPS (it should be, anywhere but loopback).
    cookie_secure: bool = False

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


def load(service: ServiceName, **overrides) -> ServiceSettings:
    """Shared variables unprefixed, then ``<SERVICE>_...`` variables for this service."""

    class _Prefixed(ServiceSettings):
        model_config = SettingsConfigDict(env_prefix=f"{service.upper()}_", extra="ignore")

    shared = SharedSettings()
    own = _Prefixed(**({"service": service} | shared.model_dump() | overrides))
    values = own.model_dump()
    if not values["http_port"]:
        values["http_port"] = DEFAULT_PORTS[service]
    return ServiceSettings.model_validate(values)


def admin_settings() -> SharedSettings:
    return SharedSettings()

