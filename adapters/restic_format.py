"""restic's on-disk repository format (version 2): a new repository written by cairn itself.

``restic init`` spends about a second of CPU calibrating scrypt and then deriving a key with
the calibrated parameters: nothing next to a nightly backup, but the whole cost of the
first backup of a small application, and many such first backups at once saturate a
worker. cairn's repository passwords are 256 random bits, so stretching them protects
nothing; the repository is written here, following restic's documented format
(https://restic.readthedocs.io/en/stable/100_references.html#repository-format), with
restic's own test scrypt parameters. restic checks all of it when it opens the repository:
the key's MAC, the config's MAC and that the chunker polynomial is irreducible.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.poly1305 import Poly1305

# scrypt parameters of the keys cairn writes: restic's own test parameters. The password
# is 32 random bytes (repository/store.py), far beyond any brute force whatever N is.
CHEAP_SCRYPT: Final = {"N": 1024, "r": 8, "p": 1}

# Poly1305's clamping of r, as restic masks the MAC key of a new master key.
_R_MASK: Final = bytes.fromhex("ffffff0ffcffff0ffcffff0ffcffff0f")

# restic's chunker polynomials have degree 53.
_DEGREE: Final = 53


# -- the chunker polynomial: irreducible over GF(2), chosen at random ------------------------


def _degree(x: int) -> int:
    return x.bit_length() - 1


def _mod(x: int, g: int) -> int:
    dg = _degree(g)
    while x and _degree(x) >= dg:
        x ^= g << (_degree(x) - dg)
    return x


def _mul_mod(a: int, b: int, g: int) -> int:
    product = 0
    while b:
        if b & 1:
            product ^= a
        a <<= 1
        b >>= 1
    return _mod(product, g)


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, _mod(a, b)
    return a


def irreducible(g: int) -> bool:
    """Ben-Or's test, as restic's chunker applies it: no factor of degree up to deg/2."""
    x_power = 2  # the polynomial x
    for _ in range(_degree(g) // 2):
        x_power = _mul_mod(x_power, x_power, g)  # x^(2^i) mod g, i = 1, 2, ...
        if _gcd(g, x_power ^ 2) != 1:  # gcd(g, x^(2^i) - x)
            return False
    return True


def random_polynomial() -> int:
    """A random irreducible polynomial of degree 53, drawn as restic's chunker draws one."""
    while True:
        candidate = (secrets.randbits(64) & ((1 << 54) - 1)) | (1 << _DEGREE) | 1
        if irreducible(candidate):
            return candidate


# -- sealing: AES-256-CTR and Poly1305-AES, restic's authenticated encryption ---------------


def _mac(k: bytes, r: bytes, nonce: bytes, data: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(k), modes.ECB()).encryptor()
    return Poly1305.generate_tag(r + encryptor.update(nonce) + encryptor.finalize(), data)


def seal(encrypt: bytes, k: bytes, r: bytes, plaintext: bytes) -> bytes:
    nonce = os.urandom(16)
    encryptor = Cipher(algorithms.AES(encrypt), modes.CTR(nonce)).encryptor()
    ciphertext = encryptor.update(plaintext) + encryptor.finalize()
    return nonce + ciphertext + _mac(k, r, nonce, ciphertext)


def user_key(password: str, salt: bytes, params: dict[str, Any]) -> tuple[bytes, bytes, bytes]:
    """scrypt -> (AES-256 key, Poly1305-AES k, r), as restic derives a key file's user key."""
    key = hashlib.scrypt(
        password.encode(),
        salt=salt,
        n=int(params["N"]),
        r=int(params["r"]),
        p=int(params["p"]),
        maxmem=1 << 28,
        dklen=64,
    )
    return key[:32], key[32:48], key[48:]


# -- the repository -------------------------------------------------------------------------


def _write_read_only(path: Path, content: bytes) -> None:
    """restic's local backend leaves every file it writes read-only (0400)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
    with os.fdopen(fd, "wb") as out:
        out.write(content)
        out.flush()
        os.fsync(out.fileno())


def create_repository(path: Path, password: str) -> None:
    """Writes a new, empty version-2 repository into the empty or missing folder ``path``."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for folder in ("index", "keys", "locks", "snapshots"):
        (path / folder).mkdir(mode=0o700)
    (path / "data").mkdir(mode=0o700)
    for prefix in range(256):
        (path / "data" / f"{prefix:02x}").mkdir(mode=0o700)

    encrypt, k = os.urandom(32), os.urandom(16)
    r = bytes(a & b for a, b in zip(os.urandom(16), _R_MASK, strict=True))
    master = {
        "mac": {"k": base64.b64encode(k).decode(), "r": base64.b64encode(r).decode()},
        "encrypt": base64.b64encode(encrypt).decode(),
    }
    salt = os.urandom(64)
    user = user_key(password, salt, CHEAP_SCRYPT)
    key_file = {
        "created": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "username": "cairn",
        "hostname": socket.gethostname(),
        "kdf": "scrypt",
        **CHEAP_SCRYPT,
        "salt": base64.b64encode(salt).decode(),
        "data": base64.b64encode(seal(*user, json.dumps(master).encode())).decode(),
    }
    content = json.dumps(key_file).encode()
    _write_read_only(path / "keys" / hashlib.sha256(content).hexdigest(), content)

    config = {
        "version": 2,
        "id": secrets.token_hex(32),
        "chunker_polynomial": f"{random_polynomial():x}",
    }
    sealed = seal(encrypt, k, r, json.dumps(config, separators=(",", ":")).encode())
    _write_read_only(path / "config", sealed)
