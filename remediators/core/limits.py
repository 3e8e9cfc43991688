"""Arithmetic of hard caps, shared by the actions that scale something up."""

from __future__ import annotations

import math

__all__ = ["scale_up"]


def scale_up(current: int, factor: float, cap: int) -> int:
    """`current` times `factor`, rounded up, at most `cap`, never below `current`."""
    # Round first: 100 * 1.1 is 110.00000000000001 in binary floating point.
    return max(current, min(math.ceil(round(current * factor, 6)), cap))
