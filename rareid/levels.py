"""Rates and resolution levels.

A *rate* ``r`` is HR side / LR side (``r = 1`` is HR). ``rates`` is the set of
rates the model knows; ``m = len(rates)`` resolution levels. Level ``m`` is the
highest resolution (smallest rate), level 1 the lowest. Public APIs speak of
levels 1..m; code may use 0-based indices internally (``level - 1``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import IntEnum


class Role(IntEnum):
    """What an evaluation row is: a gallery image, an MLR query or an HR reference query."""

    GALLERY = 0
    QUERY = 1
    HR_QUERY = 2


#: Most trials one evaluation set can hold: a gallery image's trials are an int64 bitmask.
MAX_TRIALS = 62


def normalize_rates(rates: Sequence[float]) -> tuple[float, ...]:
    """Validate ``rates`` and return them sorted ascending (highest resolution first)."""
    values = tuple(float(r) for r in rates)
    if not values:
        raise ValueError("rates: expected at least one downsampling rate, e.g. [1, 2, 3, 4]")
    if not all(math.isfinite(r) and r >= 1 for r in values):
        raise ValueError(
            f"rates: every rate must be a finite number >= 1 (HR side / LR side), got {list(rates)}"
        )
    if len(set(values)) != len(values):
        raise ValueError(f"rates: duplicates in {list(rates)}")
    return tuple(sorted(values))


def rate_to_level(rate: float, rates: Sequence[float]) -> int:
    """Level (1..m) of a rate that is in ``rates``; the smallest rate is level m."""
    ordered = normalize_rates(rates)
    try:
        index = ordered.index(float(rate))
    except ValueError:
        raise ValueError(f"rate {rate} is not one of the known rates {list(ordered)}") from None
    return len(ordered) - index


def level_to_rate(level: int, rates: Sequence[float]) -> float:
    """Rate of level ``level`` (1..m)."""
    ordered = normalize_rates(rates)
    m = len(ordered)
    if not 1 <= int(level) <= m:
        raise ValueError(f"level {level} is outside 1..{m} for rates {list(ordered)}")
    return ordered[m - int(level)]
