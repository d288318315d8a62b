"""Secrets at rest (services/runtime/sealing.py) and the refusal to run with missing or default
secrets outside development (ServiceSettings.startup_problems, Service)."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from services.runtime.sealing import PREFIX, SealingError, SecretBox
from services.runtime.service import ConfigurationError, Service
from services.runtime.settings import DEVELOPMENT_SECRETS_KEY, load

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def test_a_sealed_secret_is_not_readable_and_opens_to_itself():
    box = SecretBox([NEW])
    stored = box.seal("whsec_abc123")
    assert stored.startswith(PREFIX) and "whsec_abc123" not in stored
    assert box.open(stored) == "whsec_abc123" and box.open(None) is None


def test_rotation_opens_with_an_old_key_and_reseals_under_the_new_one():
    before = SecretBox([OLD]).seal("whsec_rotate")
    rotated = SecretBox([NEW, OLD])
    assert rotated.open(before) == "whsec_rotate" and rotated.needs_reseal(before)
    after = rotated.reseal(before)
    assert not rotated.needs_reseal(after) and SecretBox([NEW]).open(after) == "whsec_rotate"


def test_a_secret_stored_in_clear_opens_and_is_marked_for_sealing():
    box = SecretBox([NEW])
    assert box.open("whsec_legacy") == "whsec_legacy" and box.needs_reseal("whsec_legacy")


def test_without_the_right_key_nothing_opens():
    with pytest.raises(SealingError, match="cannot be opened"):
        SecretBox([NEW]).open(SecretBox([OLD]).seal("x"))
    with pytest.raises(SealingError, match="SECRETS_KEYS"):
        SecretBox([])
    with pytest.raises(SealingError, match="not a Fernet key"):
        SecretBox(["not-a-key"])


@pytest.mark.parametrize(
    "env, problem",
    [
        ({"SECRETS_KEYS": ""}, "SECRETS_KEYS is not set"),
        ({"SECRETS_KEYS": DEVELOPMENT_SECRETS_KEY}, "published development key"),
        ({"BROKERAGE_OIDC_CLIENT_SECRET": "change-me-secret"}, "oidc_client_secret is still the placeholder"),
        ({"BROKERAGE_OIDC_CLIENT_SECRET": "short"}, "oidc_client_secret is shorter than 16"),
        ({"BROKERAGE_SMTP_PASSWORD": "change-me"}, "smtp_password is still the placeholder"),
    ],
)
def test_a_service_refuses_to_start_in_production_with_a_missing_or_default_secret(monkeypatch, tmp_path, env, problem):
    monkeypatch.setenv("SECRETS_KEYS", NEW)
    monkeypatch.delenv("HOMECARE_ENVIRONMENT", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load("brokerage")
    assert settings.environment == "production"
    with pytest.raises(ConfigurationError, match=problem):
        Service(settings, migrations=tmp_path)


def test_in_development_the_same_configuration_starts_with_the_published_key(monkeypatch, tmp_path):
    monkeypatch.setenv("HOMECARE_ENVIRONMENT", "development")
    monkeypatch.setenv("SECRETS_KEYS", "")
    monkeypatch.setenv("BROKERAGE_OIDC_CLIENT_SECRET", "change-me-secret")
    service = Service(load("brokerage"), migrations=tmp_path)
    assert service.secrets.open(SecretBox([DEVELOPMENT_SECRETS_KEY]).seal("x")) == "x"


def test_a_well_configured_production_service_starts(monkeypatch, tmp_path):
    monkeypatch.delenv("HOMECARE_ENVIRONMENT", raising=False)
    monkeypatch.setenv("SECRETS_KEYS", f"{NEW},{OLD}")
    monkeypatch.setenv("BROKERAGE_OIDC_CLIENT_SECRET", "a-long-random-client-secret-1234")
    assert Service(load("brokerage"), migrations=tmp_path).secrets.open(SecretBox([OLD]).seal("y")) == "y"
