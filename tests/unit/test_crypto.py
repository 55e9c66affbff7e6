"""Envelope encryption: round trip, context binding, tamper and wrong-key detection."""

from __future__ import annotations

import pytest

from core import crypto


def test_round_trip_and_randomised() -> None:
    key = crypto.generate_master_key()
    a = crypto.seal(b"hunter2", master_key=key, context="x")
    b = crypto.seal(b"hunter2", master_key=key, context="x")
    assert a != b and b"hunter2" not in a.encode()
    assert crypto.open_sealed(a, master_key=key, context="x") == b"hunter2"


def test_wrong_context_key_or_tampering_fails() -> None:
    key = crypto.generate_master_key()
    sealed = crypto.seal_json({"p": "v"}, master_key=key, context="row/1")
    with pytest.raises(crypto.CryptoError):
        crypto.open_json(sealed, master_key=key, context="row/2")
    with pytest.raises(crypto.CryptoError):
        crypto.open_json(sealed, master_key=crypto.generate_master_key(), context="row/1")
    flipped = sealed[:-3] + ("A" if sealed[-3] != "A" else "B") + sealed[-2:]
    with pytest.raises(crypto.CryptoError):
        crypto.open_json(flipped, master_key=key, context="row/1")


@pytest.mark.parametrize("bad", [None, "", "not base64!", "c2hvcnQ="])
def test_missing_or_malformed_master_key_is_explained(bad: str | None) -> None:
    with pytest.raises(crypto.CryptoError, match="CAIRN_MASTER_KEY"):
        crypto.seal(b"x", master_key=bad, context="c")
