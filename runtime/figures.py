"""Shares printed as percentages, never rounded up to a claim the counts do not make."""

from __future__ import annotations

import math


def percent(share: float, places: int = 4) -> str:
    """``share`` (0..1) as '99.9999%': rounded down, so 3 wrong of 24 million never prints as
    100.0000%, and 100% only when nothing was wrong."""
    scale = 10**places
    return f"{math.floor(share * 100 * scale + 1e-9) / scale:.{places}f}%"
