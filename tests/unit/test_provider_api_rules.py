"""The provider API's pure rules: credential tokens, call times, webhook retry delays, and the
adapter contract's requests. No I/O."""

import datetime as dt
import json
from decimal import Decimal

import pytest
from pydantic import ValidationError

from schemas.adapters import ADAPTER_MODELS, BidRequest, DeclineRequest
from schemas.vocabulary import DeclineReason
from services.providers import domain
from tests.unit.test_providers_domain import answer, package


def test_an_issued_token_authenticates_and_only_its_hash_is_kept():
    issued = domain.issue_credential()
    parsed = domain.parse_token(issued.token)
    assert parsed is not None
    credential_id, secret = parsed
    assert credential_id == issued.credential_id
    assert secret not in issued.secret_sha256 and len(secret) >= 43  # 256 random bits, url-safe
    assert domain.secret_matches(secret, issued.secret_sha256)
    assert not domain.secret_matches(secret[:-1] + ("A" if secret[-1] != "A" else "B"), issued.secret_sha256)


def test_two_credentials_never_share_an_id_or_secret():
    a, b = domain.issue_credential(), domain.issue_credential()
    assert a.credential_id != b.credential_id and a.secret_sha256 != b.secret_sha256


@pytest.mark.parametrize(
    "token", ["", "hcp", "hcp_abc_secret", "xyz_0123456789abcdef_secret", "hcp_0123456789abcdef_", "Bearer"]
)
def test_malformed_tokens_are_not_parsed(token):
    assert domain.parse_token(token) is None


def test_call_times_limit_the_calls_a_day_the_automatic_adapter_takes():
    four_calls = package()  # 4 calls a day
    assert isinstance(answer(rules=domain.AutomaticRules(call_times=["morning", "lunch", "tea", "bed"])), domain.Bid)
    declined = answer(pkg=four_calls, rules=domain.AutomaticRules(call_times=["morning", "bed"]))
    assert declined.reason is DeclineReason.call_times and "2 calls" in declined.text


def test_a_decline_needs_a_reason_from_the_list_and_text_for_other():
    assert DeclineRequest(reason="price").text == ""
    with pytest.raises(ValidationError, match="text is required"):
        DeclineRequest(reason="other")
    with pytest.raises(ValidationError):
        DeclineRequest(reason="weather")
    assert {r.value for r in DeclineReason} == {"capacity", "geography", "call_times", "skills", "price", "other"}


def test_a_bid_needs_a_positive_rate_in_pence():
    assert BidRequest(rate="18.75", earliest_start=dt.date(2026, 12, 1)).rate == Decimal("18.75")
    for rate in ("0", "-1", "18.755"):
        with pytest.raises(ValidationError):
            BidRequest(rate=rate, earliest_start=dt.date(2026, 12, 1))


PERSONAL = {
    "full_name",
    "name_of_person",
    "address",
    "postcode",
    "phone",
    "email",
    "nhs_number",
    "date_of_birth",
    "care_notes",
}


@pytest.mark.parametrize("name", sorted(ADAPTER_MODELS))
def test_the_adapter_contract_has_no_field_for_personal_details(name):
    schema = ADAPTER_MODELS[name].model_json_schema()
    names = set()
    for definition in [schema, *schema.get("$defs", {}).values()]:
        names |= set(definition.get("properties", {}))
    assert not names & PERSONAL
    assert json.dumps(schema)  # exportable
