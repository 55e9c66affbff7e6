"""The chunker polynomial test cairn applies when it writes a repository."""

from __future__ import annotations

from adapters.restic_format import irreducible, random_polynomial

# chunker polynomials restic 0.14's own `init` chose
BY_RESTIC = (0x2ECE13821C4623, 0x29D6B2C84B39DB, 0x251358BDFB1BCD)


def _times(a: int, b: int) -> int:
    """a * b over GF(2)."""
    product = 0
    for bit in range(b.bit_length()):
        if b >> bit & 1:
            product ^= a << bit
    return product


def test_polynomials_restic_chose_are_irreducible() -> None:
    assert all(irreducible(p) for p in BY_RESTIC)


def test_polynomials_with_a_factor_are_not() -> None:
    assert not irreducible((1 << 53) | (1 << 7) | 3)  # even number of terms: x + 1 divides it
    assert not irreducible(_times(BY_RESTIC[0], 0b10))  # x divides it
    assert not irreducible(_times(0b111, (1 << 51) | (1 << 6) | 1))  # a factor of degree 2
    assert not irreducible(_times(BY_RESTIC[1] >> 27 | 1, BY_RESTIC[2] >> 27 | 1))


def test_random_polynomials_have_degree_53_and_pass() -> None:
    for _ in range(5):
        p = random_polynomial()
        assert p.bit_length() - 1 == 53 and p & 1 and irreducible(p)
