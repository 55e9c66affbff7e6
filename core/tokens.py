"""Opaque bearer tokens: shown once, only their SHA-256 is stored.

Tokens carry 256 bits of randomness, so a plain hash (no salt, no slow KDF) is
enough and lets a request find its token with one indexed lookup.
"""

from __future__ import annotations

import hashlib
import secrets

PREFIX = "cairn_"


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
