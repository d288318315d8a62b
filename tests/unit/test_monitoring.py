"""The Prometheus and Grafana files in deploy/monitoring refer only to metrics the services export."""

import json
import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import services.runtime.metrics  # noqa: F401 - registers the metrics

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"


def exported() -> set[str]:
    names = set()
    for metric in REGISTRY.collect():
        if metric.name.startswith("homecare_"):
            names |= {
                metric.name,
                f"{metric.name}_total",
                f"{metric.name}_bucket",
                f"{metric.name}_count",
                f"{metric.name}_sum",
            }
    return names


def referenced(text: str) -> set[str]:
    return set(re.findall(r"\bhomecare_[a-z_]+", text))


def test_alert_rules_are_well_formed_and_use_exported_metrics():
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"]]
    names = {a["alert"] for a in alerts}
    assert {
        "ConsumerLagGrowing",
        "DeadLetters",
        "OutboxBacklog",
        "ServiceNotReady",
        "HospitalDischargeWaitingTooLong",
    } <= names
    for alert in alerts:
        assert alert["expr"] and alert["annotations"]["summary"]
        unknown = referenced(alert["expr"]) - exported()
        assert not unknown, f"{alert['alert']} uses {unknown}"


def test_grafana_dashboard_uses_exported_metrics():
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 8
    for expr in exprs:
        assert not referenced(expr) - exported(), expr


def test_prometheus_scrapes_every_service_on_its_internal_listener():
    from services.runtime.settings import DEFAULT_PORTS, INTERNAL_PORT_OFFSET, SERVICES

    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    scraped = {
        sc["labels"]["service"]: sc["targets"] for job in config["scrape_configs"] for sc in job["static_configs"]
    }
    assert scraped == {name: [f"127.0.0.1:{DEFAULT_PORTS[name] + INTERNAL_PORT_OFFSET}"] for name in SERVICES}
    assert config["rule_files"] == ["alerts.yml"]
