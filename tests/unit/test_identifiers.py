"""Identifiers people type or paste are stored in one canonical form, and obviously wrong ones are
refused (services/runtime/identifiers.py). No I/O."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.runtime import identifiers as ids

# What people put between the characters: spaces of every kind, dashes of every kind, dots.
SEPARATORS = st.sampled_from(["", " ", "  ", "\u00a0", "\u202f", "\t", "-", "\u2013", "\u2014", ".", "\u2212"])
PADDING = st.sampled_from(["", " ", "\u00a0", "\n", " \t "])


def typed(draw, text: str, *, case: bool = True) -> str:
    """``text`` as a person might type or paste it: separators anywhere, any case, padding."""
    out = draw(PADDING)
    for ch in text:
        out += draw(SEPARATORS) if out.strip() else ""
        out += (ch.lower() if draw(st.booleans()) else ch) if case else ch
    return out + draw(PADDING)


def nhs_numbers(first_three: st.SearchStrategy[str]):
    """Ten-digit numbers with a correct check digit, from the given leading digits."""

    @st.composite
    def build(draw):
        while True:
            stem = draw(first_three) + "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=6, max_size=6)))
            for check in "0123456789":
                if ids.nhs_check_digit_ok(stem + check) and len(set(stem + check)) > 1:
                    return stem + check

    return build()


ISSUED = nhs_numbers(st.sampled_from(["401", "450", "499", "600", "712", "799", "320", "101", "310"]))
POSTCODES = st.sampled_from(["LE65 1AA", "NG13 0AA", "LE11 3AB", "EC1A 1BB", "W1A 0AX", "M1 1AE", "CR2 6XH", "B33 8TH"])


@given(st.data(), POSTCODES)
def test_a_postcode_however_typed_is_stored_as_outward_space_inward_in_capitals(data, canonical):
    assert ids.normalise_postcode(typed(data.draw, canonical.replace(" ", ""))) == canonical


@given(st.data(), ISSUED)
def test_an_nhs_number_however_typed_is_stored_as_ten_digits(data, number):
    assert ids.normalise_nhs_number(typed(data.draw, number)) == number


@given(st.data(), st.integers(0, 999))
def test_a_mobile_however_typed_is_stored_in_e164(data, line):
    national = f"07700900{line:03d}"
    canonical = "+44" + national[1:]
    assert ids.normalise_phone(typed(data.draw, national), mobile=True) == canonical
    assert ids.normalise_phone(typed(data.draw, "+44" + national[1:]), mobile=True) == canonical
    assert ids.normalise_phone(f"+44 (0){national[1:5]} {national[5:]}") == canonical


def test_the_examples_from_the_issue():
    assert ids.normalise_postcode("le651aa") == "LE65 1AA"
    for placeholder in ("0000000000", "1111111111", "9999999999", "000 000 0000"):
        with pytest.raises(ValueError, match="all ten digits"):
            ids.normalise_nhs_number(placeholder)


@pytest.mark.parametrize("digit", "0123456789")
def test_every_repeated_digit_passes_the_check_digit_and_is_still_refused(digit):
    number = digit * 10
    assert ids.nhs_check_digit_ok(number) or digit in "3456789"  # several do: a check digit alone is not enough
    with pytest.raises(ValueError):
        ids.normalise_nhs_number(number)


@pytest.mark.parametrize(
    ("number", "why"),
    [
        ("9434765919", "outside every range"),  # Wikipedia's example: valid check digit, 9xx never issued
        ("5000000013", "outside every range"),
        ("8000000016", "outside every range"),
        ("0000000019", "outside every range"),
        ("401023213", "10 digits"),
        ("40102321377", "10 digits"),
        ("401023213X", "10 digits"),
        ("4010232138", "check digit"),
        ("", "10 digits"),
    ],
)
def test_nhs_numbers_with_no_person_behind_them_are_refused(number, why):
    with pytest.raises(ValueError, match=why):
        ids.normalise_nhs_number(number)


def test_the_test_ranges_are_refused_where_the_installation_says_so(monkeypatch):
    assert ids.normalise_nhs_number("999 876 5439") == "9998765439"
    assert ids.normalise_phone("07700 900123", mobile=True) == "+447700900123"
    monkeypatch.setenv("HOMECARE_TEST_IDENTIFIERS", "refuse")
    with pytest.raises(ValueError, match="test data"):
        ids.normalise_nhs_number("999 876 5439")
    with pytest.raises(ValueError, match="drama"):
        ids.normalise_phone("07700 900123")
    assert ids.normalise_nhs_number("401 023 2137") == "4010232137"


@pytest.mark.parametrize(
    "postcode",
    ["NOT A CODE", "LE65", "LE65 1A", "LE651AAA", "QE1 1AA", "LE65 1AI", "LE65 1CA", "1LE 1AA", "", "LE65 1A A!"],
)
def test_what_is_not_a_uk_postcode_is_refused(postcode):
    with pytest.raises(ValueError, match="postcode"):
        ids.normalise_postcode(postcode)


def test_postcode_districts():
    assert ids.normalise_postcode_district(" le 65 ") == "LE65"
    assert ids.postcode_district_of("LE65 1AA") == "LE65"
    for bad in ("LE65 1AA", "65", "LEE1", ""):
        with pytest.raises(ValueError, match="district"):
            ids.normalise_postcode_district(bad)


@pytest.mark.parametrize(
    ("phone", "mobile", "why"),
    [
        ("12345", False, "digits"),
        ("call me", False, "digits"),
        ("+33 1 23 45 67 89", False, "UK"),
        ("01164960123", True, "mobile"),  # a landline cannot take text messages
        ("01000 000000", False, "UK"),
        ("0999 999999", False, "UK"),
    ],
)
def test_phone_numbers_the_uk_plan_does_not_allow_are_refused(phone, mobile, why):
    with pytest.raises(ValueError, match=why):
        ids.normalise_phone(phone, mobile=mobile)


def test_emails_keep_the_mailbox_and_lower_the_domain():
    assert ids.normalise_email(" Ada.Abbott@Example.ORG\u00a0") == "Ada.Abbott@example.org"
    for bad in ("ada", "ada@", "ada@example", "a b@example.org", "@example.org"):
        with pytest.raises(ValueError, match="email"):
            ids.normalise_email(bad)


def test_the_pydantic_types_name_the_field_and_treat_blank_optional_values_as_absent():
    from pydantic import BaseModel, ValidationError

    class Contact(BaseModel):
        postcode: ids.Postcode
        phone: ids.Phone = None
        email: ids.Email = None

    assert Contact(postcode="le65 1aa", phone="  ", email="").model_dump() == {
        "postcode": "LE65 1AA",
        "phone": None,
        "email": None,
    }
    with pytest.raises(ValidationError) as bad:
        Contact(postcode="LE65 1AA", phone="12")
    assert bad.value.errors()[0]["loc"] == ("phone",)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(), st.integers(), st.none(), st.binary()))
def test_property_any_input_is_normalised_or_refused_with_a_value_error_never_a_crash(value):
    for normalise in (
        ids.normalise_postcode,
        ids.normalise_postcode_district,
        ids.normalise_nhs_number,
        ids.normalise_phone,
        ids.normalise_email,
    ):
        try:
            result = normalise(value)
        except ValueError:
            continue
        assert isinstance(result, str) and result == result.strip() and normalise(result) == result
