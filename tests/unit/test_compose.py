"""docker-compose.yml cannot run here (no Docker engine), so it is checked against the
Compose Specification's JSON Schema and against what the system needs."""

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_file_is_valid_against_the_compose_specification():
    exe = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
    result = subprocess.run(
        [exe, "--builtin-schema", "vendor.compose-spec", str(ROOT / "docker-compose.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_kafka_postgres_and_the_three_services():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"kafka", "postgres", "brokerage", "providers", "notifications"} <= set(services)
    # KRaft, no ZooKeeper: the broker's configuration is deploy/kafka/server-sasl.properties
    assert "process.roles=broker,controller" in (ROOT / "deploy/kafka/server-sasl.properties").read_text()
    for name in ("brokerage", "providers", "notifications"):
        assert services[name]["command"] == ["python", "-m", f"services.{name}"]
        # each service connects as its own role, with a password that has to be given
        assert services[name]["environment"][f"{name.upper()}_DB_PASSWORD"].startswith(
            f"${{{name.upper()}_DB_PASSWORD:?"
        )


def test_compose_runs_the_console_as_its_own_role_on_the_services_apis():
    console = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["console"]
    assert console["command"] == ["python", "-m", "services.console"]
    assert console["environment"]["CONSOLE_DB_PASSWORD"].startswith("${CONSOLE_DB_PASSWORD:?")
    assert console["environment"]["CONSOLE_BROKERAGE_URL"] == "http://brokerage:8001"
    assert console["environment"]["CONSOLE_PROVIDERS_URL"] == "http://providers:8002"


def test_compose_runs_kafka_closed_with_a_principal_per_service_and_no_default_password():
    text = (ROOT / "docker-compose.yml").read_text()
    services = yaml.safe_load(text)["services"]
    kafka = services["kafka"]
    assert kafka["entrypoint"][-1] == "/homecare/compose-kafka.sh"
    script = (ROOT / "deploy/kafka/compose-kafka.sh").read_text()
    assert "/homecare/server-sasl.properties" in script and "--add-scram" in script
    config = (ROOT / "deploy/kafka/server-sasl.properties").read_text()
    assert "allow.everyone.if.no.acl.found=false" in config
    assert "super.users=User:admin\n" in config
    assert "CONTROLLER:SASL_PLAINTEXT" in config and "PLAINTEXT://" not in config.replace("SASL_PLAINTEXT://", "")
    for name in ("brokerage", "providers", "notifications", "console"):
        env = services[name]["environment"]
        assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
        assert env[f"{name.upper()}_KAFKA_PASSWORD"].startswith(f"${{HOMECARE_KAFKA_{name.upper()}_PASSWORD:?")
        assert services[name]["depends_on"]["kafka-acls"]["condition"] == "service_completed_successfully"
    assert services["kafka-acls"]["command"] == ["homecare", "kafka", "acls"]
    assert "change-me" not in services["kafka"]["environment"]["HOMECARE_KAFKA_ADMIN_PASSWORD"]


def _strings(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


def test_no_secret_has_a_default_value():
    """Every secret is required (``${VAR:?...}``): no ``change-me`` fallback, no password equal to a name."""
    text = (ROOT / "docker-compose.yml").read_text()
    assert "change-me" not in text and ":-change" not in text
    compose = yaml.safe_load(text)
    for value in _strings(compose):
        for secret in ("PASSWORD", "TOKEN", "SECRETS_KEYS"):
            if f"${{{secret}" in value or (f"_{secret}" in value and "${" in value):
                assert ":?" in value, f"{value} has a default"
    assert "postgres:postgres@" not in text


def test_only_the_console_the_provider_api_and_reporting_are_published_and_on_loopback_by_default():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    published = {name: s["ports"] for name, s in services.items() if s.get("ports")}
    # Reporting: the council's BI tools download its exports (docs/guide/reporting.md).
    assert set(published) == {"console", "providers", "reporting"}
    for ports in published.values():
        assert all(str(p).startswith("${HOMECARE_PUBLISH_ADDRESS:-127.0.0.1}:") for p in ports)
