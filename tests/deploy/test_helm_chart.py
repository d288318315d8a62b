"""The Helm chart (deploy/helm/homecare), rendered by the pinned helm with each example values
file: what a cluster would be given. `deploy/helm.sh check` (a gate of deploy/check.sh) lints it
and validates every object against the Kubernetes version docs/guide/kubernetes.md names; these
tests check what the schemas cannot: that it fits this code (ports, settings, services) and keeps
the promises of the docs (probes, secrets by reference, who may call whom)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from services.runtime.settings import DEFAULT_PORTS, INTERNAL_PORT_OFFSET, ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "homecare"
VALUES = [CHART / "values.yaml", *sorted((CHART / "examples").glob("*.yaml"))]
SECRET_WORDS = re.compile(r"PASSWORD|SECRET|_KEYS?$|TOKEN|API_KEY|ADMIN_URL")


@pytest.fixture(scope="module")
def helm() -> str:
    return subprocess.run(
        ["bash", str(ROOT / "deploy" / "helm.sh"), "path"], check=True, capture_output=True, text=True
    ).stdout.strip()


def render(helm: str, values: Path, *extra: str) -> list[dict]:
    out = subprocess.run(
        [helm, "template", "homecare", str(CHART), "-f", str(values), "--kube-version", "1.35.0", *extra],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def of_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"].removeprefix("homecare-"): o for o in objects if o["kind"] == kind}


@pytest.fixture(scope="module", params=VALUES, ids=lambda p: p.name)
def objects(request, helm) -> list[dict]:
    return render(helm, request.param)


def test_the_chart_runs_every_service_of_the_code_on_its_ports(objects):
    deployments = of_kind(objects, "Deployment")
    assert set(deployments) == set(DEFAULT_PORTS)
    for name, deployment in deployments.items():
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["python", "-m", f"services.{name}"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"http": DEFAULT_PORTS[name], "internal": DEFAULT_PORTS[name] + INTERNAL_PORT_OFFSET}


def test_every_variable_the_chart_sets_is_a_setting_the_service_reads(objects):
    """A misspelt variable would be ignored silently (the settings ignore unknown names)."""
    fields = set(ServiceSettings.model_fields) | {"homecare_environment"}
    for name, deployment in of_kind(objects, "Deployment").items():
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        for env in container["env"]:
            variable = env["name"].lower()
            if variable == "ssl_cert_file":
                continue  # OpenSSL's, for the Kafka clients' trust
            assert variable.removeprefix(f"{name}_") in fields, f"{name}: {env['name']} is no setting"


def test_secrets_are_referenced_never_inlined(objects):
    for obj in objects:
        spec = obj["spec"].get("template", {}).get("spec", {})
        for container in spec.get("containers", []):
            for env in container.get("env", []):
                if SECRET_WORDS.search(env["name"]):
                    assert "value" not in env and env["valueFrom"]["secretKeyRef"]["name"] == "homecare-secrets", env
    assert not [o for o in objects if o["kind"] == "Secret"]


def test_probes_use_the_internal_listener_and_shutdown_outlasts_the_graceful_timeout(objects):
    graceful = ServiceSettings.model_fields["graceful_timeout_seconds"].default
    for deployment in of_kind(objects, "Deployment").values():
        pod = deployment["spec"]["template"]["spec"]
        [container] = pod["containers"]
        assert container["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "internal"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "internal"}
        assert pod["terminationGracePeriodSeconds"] > graceful
        assert container["resources"]["requests"] and container["resources"]["limits"]
        assert pod["securityContext"]["runAsNonRoot"] and not container["securityContext"]["allowPrivilegeEscalation"]


def test_each_service_has_a_disruption_budget_and_a_network_policy(objects):
    deployments = set(of_kind(objects, "Deployment"))
    assert set(of_kind(objects, "PodDisruptionBudget")) == deployments
    assert set(of_kind(objects, "NetworkPolicy")) == deployments
    assert set(of_kind(objects, "Service")) == deployments


def test_network_policies_allow_only_the_calls_the_architecture_has(helm):
    policies = of_kind(render(helm, CHART / "values.yaml"), "NetworkPolicy")

    def callers(name: str) -> set[str]:
        [api] = [rule for rule in policies[name]["spec"]["ingress"] if rule["ports"][0]["port"] == "http"] or [
            {"from": []}
        ]
        return {
            peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"] if "podSelector" in peer else "ingress"
            for peer in api["from"]
        }

    assert callers("brokerage") == {"console", "providers"}
    assert callers("providers") == {"console", "ingress"}
    assert callers("notifications") == {"console"}
    if "reporting" in policies:
        assert callers("reporting") == {"console"}
    assert callers("console") == {"ingress"}
    for policy in policies.values():  # the internal listener: the monitoring namespace only
        [internal] = [rule for rule in policy["spec"]["ingress"] if rule["ports"][0]["port"] == "internal"]
        assert [list(peer) for peer in internal["from"]] == [["namespaceSelector"]]


def test_the_setup_job_runs_before_install_and_upgrade_as_the_administrators(objects):
    [job] = of_kind(objects, "Job").values()
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert "homecare db provision" in container["command"][-1] and "homecare kafka acls" in container["command"][-1]
    # The administrators' credentials reach this Job and no service.
    for deployment in of_kind(objects, "Deployment").values():
        keys = {
            e["valueFrom"]["secretKeyRef"]["key"]
            for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
            if "valueFrom" in e
        }
        assert not keys & {"DATABASE_ADMIN_URL", "HOMECARE_KAFKA_ADMIN_PASSWORD"}


def test_the_service_monitor_scrapes_the_internal_listeners(helm):
    [monitor] = of_kind(
        render(helm, CHART / "values.yaml", "--set", "serviceMonitor.enabled=true"), "ServiceMonitor"
    ).values()
    assert monitor["spec"]["endpoints"] == [{"port": "internal", "path": "/metrics", "interval": "30s"}]
