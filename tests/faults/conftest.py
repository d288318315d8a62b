import asyncio

import pytest

from tests.support import assert_services_agree, start_stack, stop_stack


@pytest.fixture(scope="package")
def stack(database_url, infra, namespace, artifacts, identity):
    s = start_stack(database_url, infra.kafka, namespace, artifacts / "fault-logs")
    yield s
    try:
        # After the crashes, restarts and poison: the services still agree on who holds each
        # package and on each provider's committed hours (issue 14, item 5).
        asyncio.run(assert_services_agree(database_url, timeout=60))
    finally:
        stop_stack(s)
