"""The scheme of delegation for above-rate spending (deploy/reference/delegation.yaml) and the
separation of duties, as pure rules; tests/e2e/test_authorization.py shows them through the API."""

from decimal import Decimal

import pytest

from services.brokerage.domain import approval_refusal
from services.runtime.reference import load_delegation

LIMITS = load_delegation().limits_percent
BAND = Decimal("20.00")


def refusal(roles: set[str], rate: str, *, approver: str = "amy", requested_by: str = "raj") -> str | None:
    return approval_refusal(
        approver=approver,
        approver_roles=frozenset(roles),
        requested_by=requested_by,
        band_rate=BAND,
        hourly_rate=Decimal(rate),
        limits_percent=LIMITS,
    )


def test_the_shipped_scheme_gives_brokers_5_managers_15_and_the_head_of_service_no_limit():
    assert {
        "broker": Decimal(5),
        "senior_broker": Decimal(10),
        "manager": Decimal(15),
        "head_of_service": None,
    } == LIMITS


@pytest.mark.parametrize(
    ("roles", "rate", "allowed"),
    [
        ({"broker"}, "20.80", True),  # +4%
        ({"broker"}, "21.00", True),  # +5%: the limit itself
        ({"broker"}, "22.00", False),  # +10%
        ({"senior_broker"}, "22.00", True),
        ({"manager"}, "22.00", True),
        ({"manager"}, "23.00", True),  # +15%
        ({"manager"}, "23.20", False),  # +16%
        ({"head_of_service"}, "40.00", True),  # no limit
        ({"broker", "manager"}, "23.00", True),  # the highest of one's roles counts
        ({"operations"}, "20.01", False),  # a role not in the scheme approves nothing
        (set(), "20.01", False),
    ],
)
def test_each_role_approves_up_to_its_limit(roles, rate, allowed):
    assert (refusal(roles, rate) is None) is allowed


def test_nobody_approves_their_own_request_whatever_their_role():
    assert "requested themselves" in refusal({"head_of_service"}, "20.10", approver="raj", requested_by="raj")


def test_the_refusal_says_how_far_above_and_what_the_role_may_approve():
    assert refusal({"broker"}, "22.00") == (
        "the bid is 10.0% above the band rate; the scheme of delegation lets your role approve up to 5% above the "
        "band rate"
    )
