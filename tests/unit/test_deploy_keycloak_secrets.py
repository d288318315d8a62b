"""deploy/keycloak.sh's generated secrets: one per client secret the realm substitutes, made once,
and made for a client added to the realm on a machine whose secrets file predates it."""

import re
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REALM = ROOT / "deploy" / "keycloak" / "realm-homecare.json"


def _keycloak_env(run_dir: Path) -> dict[str, str]:
    printed = subprocess.run(
        ["bash", str(ROOT / "deploy" / "keycloak.sh"), "env"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOMECARE_RUN_DIR": str(run_dir), "HOMECARE_CACHE_DIR": str(run_dir / "cache")},
        check=True,
    )
    return dict(line.split("=", 1) for line in printed.stdout.splitlines())


def _settings(path: Path) -> list[tuple[str, str]]:
    return [(key, value) for key, _, value in (line.partition("=") for line in path.read_text().splitlines() if line)]


def _realm_secrets() -> set[str]:
    return set(re.findall(r"\$\{(HOMECARE_KC_[A-Z_]+_SECRET)\}", REALM.read_text()))


def test_a_new_run_directory_gets_a_secret_for_every_client_of_the_realm(tmp_path):
    printed = _keycloak_env(tmp_path)
    secrets = tmp_path / "keycloak" / "secrets.env"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    kept = dict(_settings(secrets))
    assert _realm_secrets() >= {"HOMECARE_KC_BROKERAGE_SECRET", "HOMECARE_KC_CONSOLE_SECRET"}
    assert set(kept) == _realm_secrets() | {"HOMECARE_DEMO_PASSWORD", "KC_BOOTSTRAP_ADMIN_PASSWORD"}
    assert all(len(value) >= 16 for value in kept.values())
    assert printed["CONSOLE_OIDC_CLIENT_SECRET"] == kept["HOMECARE_KC_CONSOLE_SECRET"]
    assert printed["HOMECARE_DEMO_PASSWORD"] == kept["HOMECARE_DEMO_PASSWORD"]


def test_a_secrets_file_from_an_older_checkout_keeps_its_values_and_gains_the_missing_ones(tmp_path):
    """The file was made when the realm had fewer clients (and its last line lacks a newline): the
    secrets it has stay as Keycloak imported them, and each missing one is made, once."""
    secrets = tmp_path / "keycloak" / "secrets.env"
    secrets.parent.mkdir(parents=True)
    secrets.write_text("HOMECARE_KC_BROKERAGE_SECRET=kept-brokerage-secret-1234\nHOMECARE_DEMO_PASSWORD=demo-kept1234")
    secrets.chmod(0o600)
    printed = _keycloak_env(tmp_path)
    first = _settings(secrets)
    kept = dict(first)
    assert len(first) == len(kept), "a key written twice"
    assert kept["HOMECARE_KC_BROKERAGE_SECRET"] == "kept-brokerage-secret-1234"
    assert kept["HOMECARE_DEMO_PASSWORD"] == "demo-kept1234"
    assert set(kept) == _realm_secrets() | {"HOMECARE_DEMO_PASSWORD", "KC_BOOTSTRAP_ADMIN_PASSWORD"}
    assert printed["BROKERAGE_OIDC_CLIENT_SECRET"] == "kept-brokerage-secret-1234"
    assert printed["CONSOLE_OIDC_CLIENT_SECRET"] == kept["HOMECARE_KC_CONSOLE_SECRET"]
    _keycloak_env(tmp_path)
    assert _settings(secrets) == first  # made once: a second run changes nothing
