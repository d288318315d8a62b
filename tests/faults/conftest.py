import pytest

from tests.support import start_stack, stop_stack


@pytest.fixture(scope="package")
def stack(database_url, infra, namespace, artifacts, identity):
    s = start_stack(database_url, infra.kafka, namespace, artifacts / "fault-logs")
    yield s
    stop_stack(s)
