"""Secrets kept at rest encrypted: webhook signing secrets and any other credential a service must
be able to read back (unlike API tokens, which are stored as hashes only).

Fernet (AES-128-CBC with HMAC-SHA256, from the ``cryptography`` package) with keys from the
environment: ``SECRETS_KEYS`` is a comma-separated list of Fernet keys; the first seals, all of
them open, so a key is rotated by putting the new one first, restarting, and letting
:func:`reseal` rewrite the rows before the old key is dropped (docs/guide/security.md).

A sealed value is stored as ``enc:v1:<fernet token>``. A value without the prefix is a secret
stored before encryption existed: it still opens, and each service reseals such rows at start.

Generate a key: ``uv run python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"``.
"""

from __future__ import annotations

from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

PREFIX = "enc:v1:"


class SealingError(RuntimeError):
    """No usable key, or a sealed value that none of the keys opens."""


class SecretBox:
    """Seals and opens secrets with the installation's keys."""

    def __init__(self, keys: list[str]) -> None:
        keys = [k.strip() for k in keys if k.strip()]
        if not keys:
            raise SealingError("no key to seal secrets with: set SECRETS_KEYS (comma-separated Fernet keys)")
        try:
            fernets = [Fernet(k) for k in keys]
        except ValueError:
            raise SealingError("SECRETS_KEYS holds a value that is not a Fernet key (32 url-safe base64 bytes)") from (
                None
            )
        self._current = fernets[0]
        self._fernet = MultiFernet(fernets)

    def seal(self, plaintext: str) -> str:
        """The stored form of a secret: ``enc:v1:<token>``."""
        return PREFIX + self._fernet.encrypt(plaintext.encode()).decode()

    def open(self, stored: str | None) -> str | None:
        """The secret itself (None stays None). Raises :class:`SealingError` if no key opens it."""
        if stored is None:
            return None
        if not stored.startswith(PREFIX):
            return stored  # stored before sealing existed; resealed at the service's start
        try:
            return self._fernet.decrypt(stored.removeprefix(PREFIX).encode()).decode()
        except InvalidToken:
            raise SealingError("a stored secret cannot be opened with any key in SECRETS_KEYS") from None

    def needs_reseal(self, stored: str | None) -> bool:
        """Stored in clear, or sealed with a key that is no longer the first."""
        if stored is None:
            return False
        if not stored.startswith(PREFIX):
            return True
        try:
            self._current.decrypt(stored.removeprefix(PREFIX).encode())
        except InvalidToken:
            return True  # an older key's: rewrite it under the current one
        return False

    def reseal(self, stored: str | None) -> str | None:
        """The stored form under the current first key."""
        value = self.open(stored)
        return None if value is None else self.seal(value)


async def reseal_column(conn: Any, box: SecretBox, table: str, key: str, column: str) -> int:
    """Rewrite every value of ``table.column`` stored in clear or under an older key; returns how many.

    Run by a service at start (table and column names are the service's own constants)."""
    rows = await conn.fetch(f"SELECT {key} AS key, {column} AS value FROM {table} WHERE {column} IS NOT NULL")
    stale = [(r["key"], box.reseal(r["value"])) for r in rows if box.needs_reseal(r["value"])]
    if stale:
        await conn.executemany(f"UPDATE {table} SET {column} = $2 WHERE {key} = $1", stale)
    return len(stale)
