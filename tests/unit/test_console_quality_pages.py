"""The contracts and quality team's console pages rendered without a server (decision 0103): the role's
home and menu, the register, a provider's entry with the score explained, an import's report."""

import datetime as dt
from html import unescape

from services.console import domain
from services.console.api.pages import TEMPLATES, navigation
from services.console.api.quality import REASONS, RISKS
from services.console.handlers import Session


def session(role: str = "contracts_quality") -> Session:
    return Session(
        token_hash=b"x",
        kind="staff",
        csrf_token="tok",
        expires_at=dt.datetime.now(dt.UTC),
        username="demo-quality",
        display_name="Quality",
        role=role,
    )


def render(template: str, **context) -> str:
    s = session()
    return unescape(
        TEMPLATES.env.get_template(template).render(
            session=s, nav=navigation(s, "/quality"), csrf_token="tok", **context
        )
    )


def test_the_contracts_and_quality_role_has_the_register_in_its_menu_and_nothing_of_the_brokers():
    assert domain.role_from_idp(["contracts_quality"]) == domain.Role.contracts_quality
    menu = [item["href"] for item in navigation(session(), "/quality")]
    assert menu == ["/applications", "/quality", "/quality/import", "/quality/reports"]
    role = "contracts_quality"
    assert not domain.can(role, domain.Permission.board) and not domain.can(role, domain.Permission.person)
    for other in domain.Role:
        assert domain.can(other, domain.Permission.quality) == (other is domain.Role.contracts_quality)
    assert domain.can("ops", domain.Permission.reports) and not domain.can("ops", domain.Permission.quality)


ENTRY = {
    "provider_id": "bluebell-care",
    "name": "Bluebell Home Care",
    "status": "active",
    "cqc_location_id": "1-1000000001",
    "cqc_rating": "requires_improvement",
    "cqc_inspected_on": "2026-10-03",
    "cqc_source": "cqc_import",
    "local_risk": "high",
    "local_risk_reviewed_by": "carol.quality",
    "local_risk_reviewed_at": "2026-11-20T10:00:00+00:00",
    "local_risk_reason": "missed_or_late_visits",
    "hand_backs_12m": 1,
    "late_starts_12m": 2,
    "open_complaints": 1,
    "open_improvement_plans": 1,
    "quality_score": "35.0",
    "score_explained": ["CQC rating Requires improvement (inspected 2026-10-03): 35 points x 0.6"],
    "complaints": [{}],
    "improvement_plans": [{"overdue": True}],
    "changes": [
        {
            "recorded_at": dt.datetime(2026, 11, 20, 10, tzinfo=dt.UTC),
            "change": "local_risk",
            "detail": {"risk_reason": "missed_or_late_visits", "previous": {"local_risk": "low"}},
            "recorded_by": "carol.quality",
            "note": "three missed calls",
        }
    ],
}


def test_a_providers_entry_explains_its_score_and_offers_the_review_form():
    html = render("quality_provider.html", entry=ENTRY, risks=RISKS, reasons=REASONS, flash=None, done=None)
    assert "CQC rating Requires improvement (inspected 2026-10-03): 35 points x 0.6" in html
    assert "reviewed by carol.quality" in html and "overdue" in html
    assert 'name="local_risk" type="radio" value="high" checked' in html
    assert all(f'value="{r}"' in html for r in REASONS)
    assert "three missed calls" in html


def test_the_register_lists_every_provider_and_an_import_report_lists_refused_rows():
    html = render("quality.html", entries=[ENTRY])
    assert "Bluebell Home Care" in html and "red" in html and "35.0" in html
    report = {
        "applied": False,
        "rows": 3,
        "changed": [],
        "unchanged": [],
        "not_on_the_framework": 1,
        "refused": [{"line": 4, "cqc_location_id": "1-2", "field": "Publication Date", "problem": "not a date"}],
    }
    html = render("quality_import.html", report=report, problem="")
    assert "Nothing was changed" in html and "Publication Date" in html and "not a date" in html
