"""Virtual API keys: their format and how their secrets are kept.

A key reads ``ag-<id>-<secret>``: the id (12 hex characters) is public (logs, metrics,
the console show it), the secret is 32 random bytes (43 URL-safe characters). The store
keeps only ``sha256(id + "." + secret)``.

Why a fast hash and not argon2: a key is checked on every request, and a slow hash would
cost each one tens of milliseconds of CPU. Slow hashes defend low-entropy secrets
(passwords) against guessing; a 256-bit random secret cannot be guessed at any hash
speed, so one SHA-256 (with the id bound in, so a stored hash cannot be moved to another
key) is as safe here and costs a microsecond. No pepper: a lost pepper would void every
key, for no gain against a 2^256 search.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from ._models import ApiKeyRow

__all__ = ["ApiKey", "KEY_PREFIX", "new_key", "parse_key", "secret_hash", "secret_matches"]

KEY_PREFIX = "ag-"
_SHAPE = re.compile(r"^ag-([0-9a-f]{12})-([A-Za-z0-9_\-]{43})$")


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as the store hands it out: never the secret, only its hash."""

    id: str
    system: str
    name: str
    secret_hash: str
    rpm: int | None
    tokens_per_day: int | None
    created_by: str
    created_at: datetime
    revoked_by: str | None
    revoked_at: datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @classmethod
    def from_row(cls, row: ApiKeyRow) -> ApiKey:
        return cls(
            id=row.id, system=row.system, name=row.name, secret_hash=row.secret_hash, rpm=row.rpm,
            tokens_per_day=row.tokens_per_day, created_by=row.created_by, created_at=row.created_at,
            revoked_by=row.revoked_by, revoked_at=row.revoked_at,
        )


def new_key() -> tuple[str, str, str]:
    """A fresh key: (id, the whole key to hand to the caller once, the hash to store)."""
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    return key_id, f"{KEY_PREFIX}{key_id}-{secret}", secret_hash(key_id, secret)


def parse_key(text: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed key, else None."""
    match = _SHAPE.match(text)
    return (match.group(1), match.group(2)) if match else None


def secret_hash(key_id: str, secret: str) -> str:
    return hashlib.sha256(f"{key_id}.{secret}".encode()).hexdigest()


def secret_matches(key: ApiKey, secret: str) -> bool:
    return hmac.compare_digest(key.secret_hash, secret_hash(key.id, secret))
