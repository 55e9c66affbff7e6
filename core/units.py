"""Sizes: how cairn counts bytes into the gigabytes of capacities and quotas."""

from __future__ import annotations

import math
from typing import Final

GIB: Final = 1024**3
"""A capacity's or quota's "GB" is a binary gigabyte (GiB), in every layer."""


def whole_gb(size_bytes: int) -> int:
    """The GB a storage's bytes take up, rounded up: a byte over a gigabyte takes the next."""
    return math.ceil(size_bytes / GIB)
