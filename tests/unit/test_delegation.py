"""The scheme of delegation for above-rate spending (deploy/reference/delegation.yaml) and the
separation of duties, as pure rules; tests/e2e/test_authorization.py shows them through the API."""

from decimal import Decimal

import pytest
import yaml

from services.brokerage.domain import (
    Approval,
    ApprovalStep,
    ApproverLimit,
    Refusal,
    TwoApprovals,
    approval_refusal,
    approval_step,
    approver_limit,
)
from services.runtime.reference import _parse_delegation, load_delegation

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
    assert "requested themselves" in str(refusal({"head_of_service"}, "20.10", approver="raj", requested_by="raj"))


def test_the_refusal_says_how_far_above_and_what_the_role_may_approve():
    assert refusal({"broker"}, "22.00") == (
        "the bid is 10.0% above the band rate; the scheme of delegation lets your role approve up to 5% above the "
        "band rate"
    )


# ---- a second approver where the limit requires one (decision record 0123) ----------------------

SCHEME = load_delegation()
SHIPPED_TWO = TwoApprovals(SCHEME.first_approval_below_limit, SCHEME.two_approvals_above_percent)


def step(
    approver: str,
    roles: set[str],
    rate: str,
    *,
    earlier: tuple[Approval, ...] = (),
    two: TwoApprovals = SHIPPED_TWO,
    requested_by: str = "raj",
) -> ApprovalStep | Refusal:
    return approval_step(
        approver=approver,
        approver_roles=frozenset(roles),
        requested_by=requested_by,
        band_rate=BAND,
        hourly_rate=Decimal(rate),
        limits_percent=LIMITS,
        two=two,
        earlier=earlier,
    )


def first(approver: str, roles: set[str], rate: str, **kw) -> Approval:
    s = step(approver, roles, rate, **kw)
    assert isinstance(s, ApprovalStep) and not s.final, s
    return s.approval


def test_the_shipped_scheme_allows_a_first_approval_below_the_limit_and_two_approvals_beyond_20_per_cent():
    assert SCHEME.first_approval_below_limit is True
    assert SCHEME.two_approvals_above_percent == Decimal(20)


def test_within_the_limit_one_approval_places_the_package():
    s = step("amy", {"broker"}, "21.00")  # +5%
    assert isinstance(s, ApprovalStep) and s.final and s.approval.within_limit
    assert (s.approval.role, s.approval.limit_percent) == ("broker", Decimal(5))


def test_below_the_limit_it_is_a_first_approval_that_waits_for_an_approver_whose_limit_covers_it():
    s = step("amy", {"broker"}, "22.00")  # +10%
    assert isinstance(s, ApprovalStep) and not s.final and s.awaiting == "approver_within_limit"
    assert s.approval == Approval("amy", "broker", Decimal(5), False)
    # Another broker cannot complete it: the second approval must be within its approver's limit.
    refused = step("bo", {"broker"}, "22.00", earlier=(s.approval,))
    assert isinstance(refused, Refusal) and (refused.status, refused.code) == (403, "not-delegated")
    assert "second approval must be within" in refused.message
    # A senior broker (10%) can.
    done = step("sam", {"senior_broker"}, "22.00", earlier=(s.approval,))
    assert isinstance(done, ApprovalStep) and done.final and done.approval.within_limit


def test_nobody_approves_the_same_bid_twice():
    amy = first("amy", {"broker"}, "22.00")
    again = step("amy", {"broker", "manager"}, "22.00", earlier=(amy,))
    assert isinstance(again, Refusal) and (again.status, again.code) == (409, "already-approved")


def test_nobody_approves_their_own_request_first_or_second():
    own = step("raj", {"broker"}, "22.00", requested_by="raj")
    assert isinstance(own, Refusal) and (own.status, own.code) == (403, "not-delegated")
    amy = first("amy", {"broker"}, "22.00")
    own_second = step("raj", {"head_of_service"}, "22.00", earlier=(amy,), requested_by="raj")
    assert isinstance(own_second, Refusal) and own_second.status == 403


def test_a_role_outside_the_scheme_records_no_approval_at_all():
    s = step("ola", {"operations"}, "20.10")
    assert isinstance(s, Refusal) and s.status == 403 and "nothing above the band rate" in s.message


def test_without_second_approvers_an_approval_below_the_limit_is_refused_as_before():
    one = TwoApprovals(first_below_limit=False, always_above_percent=None)
    s = step("amy", {"broker"}, "22.00", two=one)
    assert isinstance(s, Refusal) and s.status == 403 and "up to 5% above" in s.message
    done = step("jo", {"manager"}, "22.00", two=one)
    assert isinstance(done, ApprovalStep) and done.final


def test_beyond_the_two_approval_threshold_even_an_unlimited_approver_needs_a_second():
    head = step("hana", {"head_of_service"}, "25.00")  # +25% > 20%
    assert isinstance(head, ApprovalStep) and not head.final and head.awaiting == "second_approver"
    assert head.approval.within_limit and head.approval.limit_percent is None
    # Anyone else in the scheme completes it: one of the two is within its limit.
    done = step("amy", {"broker"}, "25.00", earlier=(head.approval,))
    assert isinstance(done, ApprovalStep) and done.final and not done.approval.within_limit
    # Two below the limit never do.
    amy = first("amy", {"broker"}, "25.00")
    refused = step("jo", {"manager"}, "25.00", earlier=(amy,))
    assert isinstance(refused, Refusal) and refused.status == 403
    # At the threshold itself, one approval within the limit is enough.
    at = step("hana", {"head_of_service"}, "24.00")  # +20%
    assert isinstance(at, ApprovalStep) and at.final


def test_the_highest_of_ones_roles_is_the_limit_recorded():
    assert approver_limit(frozenset({"broker", "manager"}), LIMITS) == ApproverLimit("manager", Decimal(15))
    assert approver_limit(frozenset({"manager", "head_of_service"}), LIMITS) == ApproverLimit("head_of_service", None)
    assert approver_limit(frozenset({"operations"}), LIMITS) == ApproverLimit(None, None)


@pytest.mark.parametrize(
    ("section", "complaint"),
    [
        ("second_approver: {first_approval_below_limit: 'yes'}", "true or false"),
        ("second_approver: {two_approvals_above_percent: -1}", "negative"),
        ("second_approver: {two_signatures: 3}", "unknown settings"),
    ],
)
def test_a_bad_second_approver_section_is_refused_and_named(tmp_path, section, complaint):
    (tmp_path / "delegation.yaml").write_text(
        f'version: "x"\nabove_rate_approval_limits_percent: {{broker: 5}}\n{section}\n'
    )
    with pytest.raises(ValueError, match=complaint):
        _parse_delegation(yaml.safe_load((tmp_path / "delegation.yaml").read_text()))


def test_a_scheme_without_the_section_keeps_one_approval_within_the_limit():
    scheme = _parse_delegation({"version": "x", "above_rate_approval_limits_percent": {"broker": 5}})
    assert scheme.first_approval_below_limit is False and scheme.two_approvals_above_percent is None
