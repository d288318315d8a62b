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
from typing import Annotated
from urllib.parse import urlencode

from fastapi import Query, Request, Response

from services.runtime.http import ProblemError

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


def encode(at: dt.datetime, row_id: uuid.UUID) -> str:
    """The cursor after a row whose sort key is (``at``, ``row_id``)."""
    raw = json.dumps([at.isoformat(), str(row_id)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str | None) -> tuple[dt.datetime, uuid.UUID] | None:
    """The sort key a cursor carries; None for no cursor; a 422 naming ``cursor`` for a bad one."""
    if cursor is None:
        return None
    try:
        at, row_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        parsed = dt.datetime.fromisoformat(at), uuid.UUID(row_id)
    except (ValueError, TypeError, binascii.Error):
        raise ProblemError(422, "cursor is not a cursor this list gave out", field="cursor") from None
    if parsed[0].tzinfo is None:
        raise ProblemError(422, "cursor is not a cursor this list gave out", field="cursor")
    return parsed


def link_next(request: Request, response: Response, cursor: str) -> None:
    """Set the ``Link`` header to the same request with ``cursor`` moved on."""
    query = dict(request.query_params) | {"cursor": cursor}
    response.headers["Link"] = f'<{request.url.path}?{urlencode(query)}>; rel="next"'
