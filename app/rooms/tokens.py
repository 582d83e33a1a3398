"""Lecturer tokens and room codes."""

from __future__ import annotations

import hashlib
import hmac
import secrets

# No 0/O, 1/I/L: a code read off a projector is typed without guessing.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 6


def new_token() -> str:
    """192 random bits, URL-safe."""
    return secrets.token_urlsafe(24)


def hash_token(token: str) -> str:
    """What the database holds: SHA-256 hex (a 192-bit random token needs no salt or stretching)."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str | None, token_hash: str) -> bool:
    """Constant-time comparison of the token's hash with the stored one."""
    if not token:
        return False
    return hmac.compare_digest(hash_token(token), token_hash)


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(code: object) -> str | None:
    """Upper-cased code, or None if it cannot be a room code."""
    if not isinstance(code, str):
        return None
    code = code.strip().upper()
    if len(code) != CODE_LENGTH or any(c not in CODE_ALPHABET for c in code):
        return None
    return code
