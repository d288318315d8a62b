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
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    for name in ("brokerage", "providers", "notifications"):
        assert services[name]["command"] == ["python", "-m", f"services.{name}"]
        # each service connects as its own role
        assert services[name]["environment"][f"{name.upper()}_DB_PASSWORD"] == name


def test_compose_runs_the_console_as_its_own_role_on_the_services_apis():
    console = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["console"]
    assert console["command"] == ["python", "-m", "services.console"]
    assert console["environment"]["CONSOLE_DB_PASSWORD"] == "console"
    assert console["environment"]["CONSOLE_BROKERAGE_URL"] == "http://brokerage:8001"
    assert console["environment"]["CONSOLE_PROVIDERS_URL"] == "http://providers:8002"
