"""Identifiers people type or paste, in one canonical form, and the obviously wrong ones refused.

Every API that takes a postcode, postcode district, NHS number, phone number or email address
normalises it here (through the pydantic types at the bottom), so what is stored, compared and
shown is the same whatever the spacing or punctuation typed: spaces, non-breaking and other
Unicode spaces, dashes of any kind, dots, lower case, full-width digits, leading and trailing
whitespace. A value that cannot be an identifier raises ValueError with the reason, which the
HTTP edge turns into a 422 naming the field. Decision record 0041; docs/guide/time-and-identifiers.md.

Canonical forms:

- **postcode** "OUTWARD INWARD" in capitals, one space: "LE65 1AA" (Royal Mail's format;
  letters allowed in each position as in the UK Government Data Standards Catalogue's postcode
  standard, so "QE1 1AA" or "LE65 1AI" are refused).
- **postcode district** the outward code in capitals: "LE65".
- **NHS number** ten digits, no spaces: "9434765919"; the modulus 11 check digit must hold, all
  ten digits the same is refused (every such number passes the check digit: 0000000000 is a
  placeholder, not a person), and so is a number in no range ever issued (NHS England's
  published ranges: 010 100 0000-311 299 9999 Scotland's CHI, 300-399 million England and
  Northern Ireland, 400-499 and 600-799 million England, Wales and the Isle of Man). The
  999 000 0000-999 999 9999 range is reserved for test data and never issued: accepted unless the
  installation sets ``HOMECARE_TEST_IDENTIFIERS=refuse`` (production should).
- **phone** E.164, "+447700900123": a UK number (a leading 0 or +44) that Ofcom's numbering plan
  allows (libphonenumber's metadata); for text messages, a mobile. Ofcom's ranges for drama
  and test use (07700 900000-900999, 01134 960000-960999...) count as test identifiers, as above.
- **email** as typed, with the domain in lower case (the part before the @ is the mailbox's own
  business); syntax checked by email-validator, no DNS look-up.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable
from typing import Annotated, Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import BeforeValidator, Field

# Anything people put between the characters of an identifier: every Unicode space and dash,
# dots, slashes, brackets. NFKC first turns full-width digits and letters into ASCII ones.
_SEPARATORS = re.compile(r"[\s\u00a0\u2000-\u200b\u202f\u205f\u3000\ufeff.\-\u2010-\u2015\u2212/()]+")

# UK Government Data Standards Catalogue, postcode (BS 7666): A9 A99 A9A AA9 AA99 AA9A + 9AA.
# First letter not Q V X; second not I J Z; third (A9A) one of ABCDEFGHJKPSTUW; fourth (AA9A)
# one of ABEHMNPRVWXY; the inward letters never C I K M O V.
_OUTWARD = (
    r"(?:[A-PR-UWYZ][0-9][0-9]?|[A-PR-UWYZ][A-HK-Y][0-9][0-9]?"
    r"|[A-PR-UWYZ][0-9][A-HJKPSTUW]|[A-PR-UWYZ][A-HK-Y][0-9][ABEHMNPRVWXY])"
)
_INWARD = r"[0-9][ABD-HJLNP-UW-Z]{2}"
POSTCODE = re.compile(rf"^(?P<outward>{_OUTWARD})(?P<inward>{_INWARD})$")
DISTRICT = re.compile(rf"^{_OUTWARD}$")

# NHS number ranges ever issued (first ten digits as an integer): CHI (Scotland), England and
# Northern Ireland (3xx), England, Wales and the Isle of Man (4xx, 6xx-7xx).
NHS_ISSUED = ((10_100_000_00, 3_999_999_999), (4_000_000_000, 4_999_999_999), (6_000_000_000, 7_999_999_999))
NHS_TEST = (9_990_000_000, 9_999_999_999)

# Ofcom's numbers for drama and tests (never assigned to a line): mobile 07700 900000-900999;
# 0113-0118, 0121, 0131, 0141, 0151, 0161 496 0000-0999; 020 7946 0000-0999; 0191 498 0000-0999;
# 028 9018 and 029 2018 0000-0999; 0306 999 0000-0999; 08081 570000-570999; 0909 879 0000-0999.
_OFCOM_TEST = re.compile(
    r"^\+44(?:7700900\d{3}|11[3-8]4960\d{3}|1[2-6]14960\d{3}|2079460\d{3}|1914980\d{3}"
    r"|2890180\d{3}|2920180\d{3}|3069990\d{3}|8081570\d{3}|9098790\d{3})$"
)


def _test_identifiers_allowed() -> bool:
    """Whether identifiers from ranges reserved for test data are accepted (read on each call, so
    a test can change it): ``HOMECARE_TEST_IDENTIFIERS=refuse`` in production."""
    return os.environ.get("HOMECARE_TEST_IDENTIFIERS", "accept").strip().lower() != "refuse"


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be text")
    return unicodedata.normalize("NFKC", value).strip()


def _compact(value: object) -> str:
    """Upper case with every separator removed: what an identifier is made of."""
    return _SEPARATORS.sub("", _text(value)).upper()


def normalise_postcode(value: object) -> str:
    """A UK postcode as "OUTWARD INWARD", e.g. " le65-1aa " -> "LE65 1AA".

    Raises ValueError when it is not in the UK postcode format."""
    compact = _compact(value)
    if compact == "GIR0AA":  # Girobank's, the one exception to the format
        return "GIR 0AA"
    match = POSTCODE.match(compact)
    if not match:
        raise ValueError("not a UK postcode (like LE11 3AB)")
    return f"{match['outward']} {match['inward']}"


def normalise_postcode_district(value: object) -> str:
    """The outward code of a postcode in capitals, e.g. "le 65" -> "LE65". Raises ValueError."""
    compact = _compact(value)
    if not DISTRICT.match(compact):
        raise ValueError("not a postcode district (the outward code of a postcode, like LE11)")
    return compact


def postcode_district_of(postcode: str) -> str:
    """The district (outward code) of a canonical postcode."""
    return postcode.split(" ", 1)[0]


def nhs_check_digit_ok(digits: str) -> bool:
    """The NHS number's modulus 11 check digit (NHS Data Dictionary): weights 10..2 on the first
    nine digits; 11 - (sum mod 11), 11 meaning 0 and 10 meaning no valid number."""
    total = sum(int(d) * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    check = 0 if check == 11 else check
    return check != 10 and check == int(digits[9])


def normalise_nhs_number(value: object) -> str:
    """An NHS number as ten digits, e.g. "943 476 5919" or "943-476-5919" -> "9434765919".

    Raises ValueError: not ten digits, a wrong check digit, all digits the same, or a number in
    no range ever issued (the test range only when the installation refuses test identifiers)."""
    digits = _compact(value)
    if not (len(digits) == 10 and digits.isascii() and digits.isdigit()):
        raise ValueError("an NHS number is 10 digits (spaces allowed)")
    if not nhs_check_digit_ok(digits):
        raise ValueError("not a valid NHS number: the check digit is wrong")
    if len(set(digits)) == 1:
        raise ValueError("not a valid NHS number: all ten digits are the same")
    number = int(digits)
    if NHS_TEST[0] <= number <= NHS_TEST[1]:
        if not _test_identifiers_allowed():
            raise ValueError("an NHS number from the range reserved for test data (999...)")
        return digits
    if not any(low <= number <= high for low, high in NHS_ISSUED):
        raise ValueError("not a valid NHS number: outside every range NHS numbers are issued from")
    return digits


def normalise_phone(value: object, *, mobile: bool = False) -> str:
    """A UK phone number in E.164, e.g. "07700 900123" or "+44 (0)7700-900123" -> "+447700900123".

    ``mobile``: it must take text messages (a UK mobile). Raises ValueError otherwise, or for a
    number the UK numbering plan does not allow."""
    text = _text(value)
    compact = _SEPARATORS.sub("", text.replace("(0)", ""))
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if not re.fullmatch(r"\+?[0-9]{7,15}", compact):
        raise ValueError("a phone number is digits, with an optional leading +")
    try:
        parsed = phonenumbers.parse(compact, "GB")
    except phonenumbers.NumberParseException:
        raise ValueError("not a phone number") from None
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if _OFCOM_TEST.match(e164):
        if not _test_identifiers_allowed():
            raise ValueError("a number from Ofcom's range for drama and tests")
        if mobile and not e164.startswith("+447"):
            raise ValueError("not a UK mobile number (text messages need one)")
        return e164
    if parsed.country_code != 44 or not phonenumbers.is_valid_number(parsed):
        raise ValueError("not a valid UK phone number")
    if mobile and phonenumbers.number_type(parsed) != phonenumbers.PhoneNumberType.MOBILE:
        raise ValueError("not a UK mobile number (text messages need one)")
    return e164


def normalise_email(value: object) -> str:
    """An email address with its domain in lower case, e.g. " Ada@Example.ORG " -> "Ada@example.org".
    Raises ValueError with email-validator's reason."""
    try:
        return validate_email(_text(value), check_deliverability=False).normalized
    except EmailNotValidError as bad:
        raise ValueError(f"not an email address: {bad}") from None


def _not_blank(normalise: Callable[[Any], str]) -> Callable[[object], object]:
    """Optional fields: an empty or blank value means "not given"."""

    def optional(value: object) -> object:
        if value is None or (isinstance(value, str) and not _text(value)):
            return None
        return normalise(value)

    return optional


# Pydantic field types: use these in every API model that takes an identifier.
# Each bounded (maxLength in the API documents) at its canonical form's length: the normaliser
# runs first, so a value typed with spaces still fits.
Postcode = Annotated[str, BeforeValidator(normalise_postcode), Field(max_length=8)]
PostcodeDistrict = Annotated[str, BeforeValidator(normalise_postcode_district), Field(max_length=4)]
NhsNumber = Annotated[str, BeforeValidator(normalise_nhs_number), Field(max_length=10)]
_E164 = Annotated[str, Field(max_length=16)]
Phone = Annotated[_E164 | None, BeforeValidator(_not_blank(normalise_phone))]
MobilePhone = Annotated[_E164 | None, BeforeValidator(_not_blank(lambda v: normalise_phone(v, mobile=True)))]
Email = Annotated[str | None, BeforeValidator(_not_blank(normalise_email))]
