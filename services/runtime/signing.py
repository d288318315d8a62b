"""Signed webhook deliveries (offers to providers' systems, confirmations to them).

One scheme for every webhook the platform sends, so a provider's developer verifies them all the
same way: an HMAC-SHA256, keyed with the provider's whole secret string (``whsec_...``, its UTF-8
bytes), over ``"<delivery id>.<timestamp>.<body>"``. The timestamp lets a receiver reject stale
deliveries; the delivery id (unique per delivery, repeated on a retry of the same delivery) lets
it drop duplicates - and because it is signed, a captured delivery cannot be replayed under a new
id to get past that check (scheme ``v2``; ``v1`` signed only timestamp and body, and is no longer
sent or accepted: decision 0071).

Headers sent::

    Homecare-Delivery-Id: 2f6c...          (uuid; the same on every retry of one delivery)
    Homecare-Timestamp:   1764000000       (unix seconds, when this attempt was signed)
    Homecare-Signature:   v2=5d41402abc...  (hex HMAC-SHA256 of f"{delivery_id}.{timestamp}.{body}")

The specification in prose, with more test vectors: docs/guide/provider-integration.md#webhook-signing.

During a secret rotation's overlap (decision 0100) the header carries one signature per secret,
newest first, separated by a comma: ``v2=<with the new secret>,v2=<with the previous one>``; a
receiver accepts the delivery when any of them matches the secret it holds.

Test vector: secret ``whsec_test``, delivery id ``d-1``, timestamp ``1000000``, body ``{}`` gives
``v2=39763f4bd58d9778b747aa541827aa1bc664ebc9598495a5bc0bb092fc45493c``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

DELIVERY_ID_HEADER = "Homecare-Delivery-Id"
TIMESTAMP_HEADER = "Homecare-Timestamp"
SIGNATURE_HEADER = "Homecare-Signature"
SCHEME = "v2"
DEFAULT_TOLERANCE_SECONDS = 300


class SignatureError(ValueError):
    """A delivery whose signature is missing, wrong or too old; the receiver should answer 401."""


def signature(secret: str, delivery_id: str, timestamp: int, body: bytes) -> str:
    """``v2=<hex HMAC-SHA256(secret, "<delivery id>.<timestamp>.<body>")>``."""
    mac = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SCHEME}={mac.hexdigest()}"


def signed_headers(
    secret: str | Sequence[str], delivery_id: str, body: bytes, now: float | None = None
) -> dict[str, str]:
    """The headers for one delivery attempt (each attempt is signed afresh with its own timestamp).

    ``secret``: one secret, or several (a rotation's overlap: the new one first, then the previous
    one), each giving one ``v2=`` signature in the header, comma-separated, in that order."""
    timestamp = int(time.time() if now is None else now)
    secrets = [secret] if isinstance(secret, str) else list(secret)
    if not secrets:
        raise ValueError("a delivery needs at least one signing secret")
    return {
        DELIVERY_ID_HEADER: delivery_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: ",".join(signature(s, delivery_id, timestamp, body) for s in secrets),
        "Content-Type": "application/json",
    }


def verify(
    secret: str,
    headers: dict[str, str],
    body: bytes,
    *,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> str:
    """Check a delivery as a receiver would; returns its delivery id (for replay detection).

    Header names are matched case-insensitively, as HTTP requires.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        delivery_id = lower[DELIVERY_ID_HEADER.lower()]
        timestamp = int(lower[TIMESTAMP_HEADER.lower()])
        given = lower[SIGNATURE_HEADER.lower()]
    except (KeyError, ValueError) as exc:
        raise SignatureError(f"missing or malformed signature headers: {exc}") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        raise SignatureError(
            f"stale delivery: signed {int(current - timestamp)} s ago (tolerance {tolerance_seconds} s)"
        )
    expected = signature(secret, delivery_id, timestamp, body)
    # Any of the header's signatures (a rotation's overlap sends two); each compared in constant time.
    if not any(hmac.compare_digest(candidate.strip(), expected) for candidate in given.split(",")):
        raise SignatureError("signature does not match")
    return delivery_id
