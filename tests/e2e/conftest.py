"""The three services as separate OS processes on the real Kafka and PostgreSQL."""

import asyncio
import os
import signal

import pytest

from tests.standins import MailServer
from tests.support import assert_services_agree, start_stack, stop_stack


@pytest.fixture(scope="package")
def mail_server():
    """A real SMTP server (aiosmtpd) the notifications service sends its email to."""
    server = MailServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="package")  # stopped before other test packages run on the same namespace
def stack(database_url, infra, namespace, artifacts, mail_server, identity):
    # Email goes to the local SMTP server (contacts choose it: see test_placement_flow).
    email = {
        "NOTIFICATIONS_SMTP_HOST": "127.0.0.1",
        "NOTIFICATIONS_SMTP_PORT": str(mail_server.port),
        "NOTIFICATIONS_SMTP_SECURITY": "none",
        # A provider's hold on a paused package, in seconds here (14 days in production): long enough
        # to resume within it, short enough to watch one run out (tests/e2e/test_pauses_and_endings.py).
        "BROKERAGE_PAUSE_HOLD_SECONDS": "20",
    }
    s = start_stack(database_url, infra.kafka, namespace, artifacts / "e2e-logs", extra_env=email)
    os.environ["REPORTING_URL"] = s.url("reporting")  # where `homecare kpis`, run by the tests, asks
    yield s
    os.environ.pop("REPORTING_URL", None)
    try:
        # After every end-to-end test: the services agree on who holds each package, and on the
        # hours each provider has committed (issue 14, item 5).
        asyncio.run(assert_services_agree(database_url))
    finally:
        codes = stop_stack(s)
    # uvicorn re-raises SIGTERM once its graceful shutdown is done, so -15 is a clean exit too;
    # the service's own "stopped" line says the consumers, relay and pool were closed in order.
    assert all(code in (0, -signal.SIGTERM) for code in codes.values()), f"services did not shut down cleanly: {codes}"
    for name in codes:
        assert '"event": "stopped"' in (s.logs / f"{name}.log").read_text()[-2000:], (
            f"{name} did not finish its shutdown"
        )
