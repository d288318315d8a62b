"""The command line finds a local stack on the ports the deploy scripts were given (found by a new
user: ``homecare providers credentials`` and ``homecare kpis`` had used ports 8002 and 8005 with the
stack on others), and a service that does not answer is one line naming its address, not a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from services.runtime.ports import DEFAULT_PORTS, local_url


def test_a_services_local_address_follows_its_port_variable(monkeypatch):
    monkeypatch.delenv("PROVIDERS_HTTP_PORT", raising=False)
    assert local_url("providers") == f"http://127.0.0.1:{DEFAULT_PORTS['providers']}"
    monkeypatch.setenv("PROVIDERS_HTTP_PORT", "49002")
    assert local_url("providers") == "http://127.0.0.1:49002"


# Each command that calls a service over HTTP, and the port variable that should lead it there.
COMMANDS = [
    (["providers", "credentials", "list", "rowan-care"], "PROVIDERS_HTTP_PORT", "providers"),
    (["kpis", "--period", "7d"], "REPORTING_HTTP_PORT", "reporting"),
]


@pytest.mark.parametrize(("args", "variable", "service"), COMMANDS, ids=["providers-credentials", "kpis"])
def test_a_command_goes_to_the_port_its_variable_names_and_says_when_nothing_answers(args, variable, service):
    """Port 1 refuses every connection: the command must have tried it (its address in the one line
    it prints), exit 1, and print no traceback. The sign-in is skipped (no identity provider here)."""
    probe = (
        "import sys\n"
        "from services.cli import main, providers, operations\n"
        "import services.runtime.oidc_client as oidc\n"
        "oidc.user_auth = lambda *a, **k: None\n"
        "providers.user_auth = oidc.user_auth\n"
        f"sys.argv = ['homecare', *{args!r}]\n"
        "main.app()\n"
    )
    env = {"PATH": "/usr/bin:/bin", variable: "1", "HOMECARE_ENVIRONMENT": "development"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"the {service} service at http://127.0.0.1:1 did not answer" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "╭" not in done.stderr, done.stderr
