"""Envelope encryption of secrets at rest.

Each secret gets its own random data key (AES-256-GCM); the data key is wrapped
with the master key. The ``context`` string is bound as associated data, so a
ciphertext copied onto another row or column does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = "v1"
_NONCE = 12


class CryptoError(Exception):
    """A secret cannot be sealed or opened (missing or wrong master key, tampering)."""


def generate_master_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _master(master_key: str | None) -> AESGCM:
    if not master_key:
        raise CryptoError("CAIRN_MASTER_KEY is not set; secrets cannot be stored or read")
    try:
        raw = base64.b64decode(master_key, validate=True)
    except binascii.Error as exc:
        raise CryptoError("CAIRN_MASTER_KEY is not valid base64") from exc
    if len(raw) != 32:
        raise CryptoError("CAIRN_MASTER_KEY must decode to 32 bytes (AES-256)")
    return AESGCM(raw)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


def seal(plaintext: bytes, *, master_key: str | None, context: str) -> str:
    master = _master(master_key)
    data_key = AESGCM.generate_key(bit_length=256)
    key_nonce, data_nonce = os.urandom(_NONCE), os.urandom(_NONCE)
    wrapped = master.encrypt(key_nonce, data_key, context.encode())
    sealed = AESGCM(data_key).encrypt(data_nonce, plaintext, context.encode())
    return ".".join([_VERSION, _b64(key_nonce), _b64(wrapped), _b64(data_nonce), _b64(sealed)])


def open_sealed(token: str, *, master_key: str | None, context: str) -> bytes:
    master = _master(master_key)
    try:
        version, *parts = token.split(".")
        if version != _VERSION or len(parts) != 4:
            raise ValueError(version)
        key_nonce, wrapped, data_nonce, sealed = (base64.urlsafe_b64decode(p) for p in parts)
        data_key = master.decrypt(key_nonce, wrapped, context.encode())
        return AESGCM(data_key).decrypt(data_nonce, sealed, context.encode())
    except (ValueError, binascii.Error, InvalidTag) as exc:
        raise CryptoError(f"secret for {context} cannot be opened with this master key") from exc


def seal_json(value: dict[str, Any], *, master_key: str | None, context: str) -> str:
    return seal(json.dumps(value).encode(), master_key=master_key, context=context)


def open_json(token: str, *, master_key: str | None, context: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(open_sealed(token, master_key=master_key, context=context))
    return value
