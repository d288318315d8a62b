"""``Idempotency-Key`` for commands sent over HTTP: the same request sent again returns the
response the first one got, once, instead of a second effect or a refusal (a client that timed
out, crashed or lost the connection retries safely).

The rule (after the IETF draft *The Idempotency-Key HTTP Header Field*):

- a key is the caller's: ``scope`` (e.g. the provider id) keeps one caller's keys from meeting
  another's, so a key cannot be used to read another caller's response;
- the same key with the same request (operation and body, :func:`fingerprint`) returns the stored
  response; with a different request it is refused (:class:`KeyReused`: a 422 naming the header);
- only a command that succeeded is remembered: a refused one (a 409) changed nothing, and the same
  request sent again is judged again;
- the response is stored in the command's own transaction, so it exists exactly when the effect does;
  requests with the same key wait for each other (a transaction-level advisory lock on the key,
  taken before any other lock of the command, in the same call as the read of its response:
  ``services/runtime/migrations/0008_idempotency_claim.sql``);
- keys are kept for :data:`RETENTION` (7 days), then forgotten (:func:`forget_expired`).

The table is in every service's schema (``services/runtime/migrations/0005_idempotency_keys.sql``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Awaitable, Callable
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Header
from pydantic import BaseModel

from services.runtime.db import Connection, RowsInsert

if TYPE_CHECKING:
    from services.runtime.outbox import UnitOfWork

HEADER = "Idempotency-Key"
RETENTION = dt.timedelta(days=7)
REPLAYED_HEADER = "Idempotent-Replayed"

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=HEADER,
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description=(
            "Makes a retry safe: the same request sent again with the same key (printable ASCII, up to 200 "
            "characters; a UUID is a good choice) returns the first one's response, with the header "
            f"`{REPLAYED_HEADER}: true`; the same key with another request is a 422. Kept for 7 days."
        ),
    ),
]


class KeyReused(ValueError):
    """The key was used before for a different request (HTTP 422, naming the header)."""


def fingerprint(operation: str, body: BaseModel | None = None) -> str:
    """What makes two requests the same: the operation (method and path) and the body's content
    (as validated, so ``"18.5"`` and ``18.50`` are one rate), as a SHA-256 hex digest."""
    content = "" if body is None else json.dumps(body.model_dump(), default=_canonical, sort_keys=True)
    return hashlib.sha256(f"{operation}\n{content}".encode()).hexdigest()


def _canonical(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value.normalize())  # 18.5 == 18.50
    if isinstance(value, Enum):
        return str(value.value)
    return value.isoformat() if isinstance(value, dt.date) else str(value)


# The key's row, written with the unit of work's other rows at its end (decision 0141): nothing
# reads it back in the transaction, and the advisory lock keeps a second request with the key waiting
# until this one commits. One key a unit of work (a command runs once): two rows of one key in a
# statement would fail its DO UPDATE ("cannot affect row a second time").
KEY_ROWS = RowsInsert(
    "idempotency_keys",
    (("scope", "text"), ("key", "text"), ("request_hash", "text"), ("response", "text")),
    values={"response": "t.response::jsonb"},
    suffix="""ON CONFLICT (scope, key) DO UPDATE
              SET request_hash = excluded.request_hash, response = excluded.response, created_at = now()""",
)


async def once(
    uow: UnitOfWork,
    *,
    scope: str,
    key: str | None,
    request_hash: str,
    command: Callable[[], Awaitable[dict[str, Any]]],
) -> tuple[dict[str, Any], bool]:
    """Run ``command`` (in the caller's unit of work) once per key: returns (its response, False),
    or, for a key seen before with the same request, (the stored response, True). Without a key,
    the command just runs. Raises :class:`KeyReused`."""
    if key is None:
        return await command(), False
    # The key's lock, then its stored response: one call (services/runtime/migrations/0008).
    row = await uow.conn.fetchrow(
        "SELECT request_hash, response FROM idempotency_claim($1, $2, $3)",
        scope,
        key,
        dt.datetime.now(dt.UTC) - RETENTION,
    )
    if row is not None:
        if row["request_hash"] != request_hash:
            raise KeyReused(f"{HEADER} {key!r} was already used for a different request; use a new key")
        return json.loads(row["response"]), True
    response = await command()
    uow.defer(KEY_ROWS, (scope, key, request_hash, json.dumps(response, default=str)))
    return response, False


async def forget_expired(conn: Connection) -> None:
    """Delete the keys older than :data:`RETENTION` (the service's housekeeping, every minute:
    ``outbox.Relay.clean_up``). Not done per request: a key past its retention is already
    ignored by :func:`once`, and a DELETE on every command was one statement in twenty-five of a
    package's whole journey."""
    await conn.execute("DELETE FROM idempotency_keys WHERE created_at < $1", dt.datetime.now(dt.UTC) - RETENTION)
