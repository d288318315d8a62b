"""The webhook signature scheme: what a provider's receiver does with our deliveries."""

import pytest

from services.runtime.signing import SignatureError, signed_headers, verify

SECRET = "whsec-provider-p01"
BODY = b'{"package_id": "p-1"}'


def test_a_fresh_delivery_verifies_and_yields_its_delivery_id():
    headers = signed_headers(SECRET, "d-1", BODY, now=1_000_000)
    assert verify(SECRET, headers, BODY, now=1_000_010) == "d-1"


def test_header_names_are_case_insensitive():
    headers = {k.lower(): v for k, v in signed_headers(SECRET, "d-1", BODY, now=1_000_000).items()}
    assert verify(SECRET, headers, BODY, now=1_000_000) == "d-1"


@pytest.mark.parametrize(
    "tamper, complaint",
    [
        (lambda h, b: (h, b + b" "), "does not match"),
        (lambda h, b: ({**h, "Homecare-Timestamp": str(int(h["Homecare-Timestamp"]) + 1)}, b), "does not match"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "Homecare-Signature"}, b), "missing"),
        (lambda h, b: ({**h, "Homecare-Timestamp": "soon"}, b), "malformed"),
        # A captured delivery resent under a new id (to get past the receiver's duplicate check).
        (lambda h, b: ({**h, "Homecare-Delivery-Id": "d-2"}, b), "does not match"),
    ],
)
def test_tampered_or_incomplete_deliveries_are_refused(tamper, complaint):
    headers, body = tamper(signed_headers(SECRET, "d-1", BODY, now=1_000_000), BODY)
    with pytest.raises(SignatureError, match=complaint):
        verify(SECRET, headers, body, now=1_000_000)


def test_another_providers_secret_does_not_verify():
    with pytest.raises(SignatureError, match="does not match"):
        verify("whsec-provider-p02", signed_headers(SECRET, "d-1", BODY, now=1_000_000), BODY, now=1_000_000)


def test_stale_deliveries_are_refused():
    headers = signed_headers(SECRET, "d-1", BODY, now=1_000_000)
    with pytest.raises(SignatureError, match="stale"):
        verify(SECRET, headers, BODY, now=1_000_000 + 301)


def test_the_published_test_vector():
    """The vector in the provider integration guide: an independent HMAC over id, timestamp, body."""
    import hashlib
    import hmac

    headers = signed_headers("whsec_test", "d-1", b"{}", now=1_000_000)
    expected = hmac.new(b"whsec_test", b"d-1.1000000.{}", hashlib.sha256).hexdigest()
    assert headers["Homecare-Signature"] == "v2=" + expected
    assert expected == "39763f4bd58d9778b747aa541827aa1bc664ebc9598495a5bc0bb092fc45493c"
