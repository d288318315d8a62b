"""Cursor pagination for lists (the provider API's, decision 0101).

A list is read in a fixed, documented order; each page's response carries a ``Link`` header
(RFC 8288) with ``rel="next"`` pointing at the next page - the same URL with ``cursor`` set -
while there may be more. The cursor is opaque to clients: URL-safe base64 of the last row's sort
key, so a page never repeats or skips a row that existed when the first page was read, however
many rows arrive meanwhile (unlike an offset). A cursor that is not one of ours is a 422 naming
the ``cursor`` parameter.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import uuid
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Query, Request, Response

from services.runtime.http import ProblemError
from services.runtime.numbers import parse_whole

CursorParam = Annotated[
    str | None,
    Query(
        max_length=200,
        description='Where the page starts: the cursor from the previous page\'s `Link: <...>; rel="next"` header '
        "(opaque; omit it for the first page)",
    ),
]

LINK_HEADER_DOC = {
    "Link": {
        "description": 'The next page, while there may be more: `<url>; rel="next"` (RFC 8288); absent on the last',
        "schema": {"type": "string"},
    }
}


Key = dt.datetime | uuid.UUID | int


def encode(*key: Key) -> str:
    """The cursor after a row whose sort key is ``key`` (timestamps, uuids, integers)."""
    raw = json.dumps([k.isoformat() if isinstance(k, dt.datetime) else str(k) for k in key], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _timestamp(text: str) -> dt.datetime:
    at = dt.datetime.fromisoformat(text)
    if at.tzinfo is None:
        raise ValueError("a cursor's time has a zone")
    return at


# Whole numbers in 0-9 alone: int() also reads other scripts' digits (decision 0154).
PARSERS: dict[type, Any] = {dt.datetime: _timestamp, uuid.UUID: uuid.UUID, int: parse_whole}


def decode(cursor: str | None, *types: type) -> tuple[Any, ...] | None:
    """The sort key a cursor carries, its parts of ``types``; None for no cursor; a 422 naming
    ``cursor`` for one this list did not give out."""
    if cursor is None:
        return None
    try:
        parts = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(parts, list) or len(parts) != len(types):
            raise ValueError("not this list's cursor")
        return tuple(PARSERS[t](str(p)) for t, p in zip(types, parts, strict=True))
    # RecursionError: JSON nested deeper than Python's parser goes (a made-up cursor; was a 500).
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise ProblemError(422, "cursor is not a cursor this list gave out", field="cursor") from None


def link_next(request: Request, response: Response, cursor: str) -> None:
    """Set the ``Link`` header to the same request with ``cursor`` moved on."""
    query = dict(request.query_params) | {"cursor": cursor}
    response.headers["Link"] = f'<{request.url.path}?{urlencode(query)}>; rel="next"'
