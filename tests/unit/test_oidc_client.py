"""The command line's token client says what it could not reach, and what to set."""

from __future__ import annotations

import socket

import pytest
from typer.testing import CliRunner

from services.cli.main import app
from services.runtime.oidc_client import OidcAuth, TokenError


def _closed_port() -> int:
    with socket.socket() as s:  # bound then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_identity_provider_that_cannot_be_reached_is_named_with_what_to_set():
    """Found by a new user: `homecare token` with Keycloak on another port ended a 40-line traceback
    with "Connection refused" alone."""
    issuer = f"http://127.0.0.1:{_closed_port()}/realms/homecare"
    with pytest.raises(TokenError, match="cannot be reached") as refused:
        OidcAuth(issuer, "homecare-cli", username="demo-broker", password="x").token()
    assert issuer in str(refused.value) and "HOMECARE_KEYCLOAK_PORT" in str(refused.value)


def test_the_token_command_prints_the_cause_and_fails(monkeypatch):
    issuer = f"http://127.0.0.1:{_closed_port()}/realms/homecare"
    monkeypatch.setenv("OIDC_ISSUER", issuer)
    monkeypatch.setenv("HOMECARE_DEMO_PASSWORD", "not-used")
    result = CliRunner().invoke(app, ["token", "demo-broker"])
    assert result.exit_code == 1
    assert "cannot be reached" in result.output and issuer in result.output, result.output
    assert "Traceback" not in result.output
