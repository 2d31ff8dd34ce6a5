"""The console's passwords: hashed with argon2id (argon2-cffi); only the hash is ever stored."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()
# checked when no admin has the name given, so that a wrong name takes as long as a wrong password
_UNKNOWN = _HASHER.hash("no such admin")
MIN_PASSWORD_CHARS = 10


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (salted; a different string every time)."""
    return _HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches the hash (None: no such admin, still as slow as a real check)."""
    try:
        return _HASHER.verify(password_hash or _UNKNOWN, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False
