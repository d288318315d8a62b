"""The Kafka identity a process signs in with on a secured cluster."""

import pytest
from faststream.security import SASLScram512

from services.runtime.kafka import broker_security
from services.runtime.settings import SharedSettings, load


def test_a_service_signs_in_as_itself_by_default() -> None:
    settings = load("brokerage", kafka_security_protocol="SASL_PLAINTEXT", kafka_password="pw")
    security = broker_security(settings)
    assert isinstance(security, SASLScram512)
    assert security.username == "brokerage"


def test_the_operator_without_a_username_is_told_which_setting_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    # Found by mypy: the username could be None, and the client then failed only when it first
    # connected, with a SASL error that does not name the setting.
    monkeypatch.delenv("KAFKA_USERNAME", raising=False)
    settings = SharedSettings(kafka_security_protocol="SASL_PLAINTEXT")
    with pytest.raises(ValueError, match="KAFKA_USERNAME"):
        broker_security(settings)


def test_a_plaintext_cluster_needs_no_identity() -> None:
    assert broker_security(SharedSettings(kafka_security_protocol="PLAINTEXT")) is None
