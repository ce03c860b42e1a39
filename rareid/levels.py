"""Rates and resolution levels.

A *rate* ``r`` is HR side / LR side (``r = 1`` is HR). ``rates`` is the set of
rates the model knows; ``m = len(rates)`` resolution levels. Level ``m`` is the
highest resolution (smallest rate), level 1 the lowest. Public APIs speak of
levels 1..m; code may use 0-based indices internally (``level - 1``).

A real (not synthesised) image gets its level from its size: :func:`estimate_rate` says
``r_est = h_ref / h``, :func:`assign_level` takes the nearest known rate in log scale (ties go to
the lower resolution), or the next lower / higher known resolution (paper Table VI). Level ``k``
of an embedding is its first :func:`prefix_lengths` ``[k - 1]`` dimensions (Eq. 2). Plain
arithmetic: training, evaluation and deployment share it without importing an image library.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import IntEnum
from typing import Literal, get_args


class Role(IntEnum):
    """What an evaluation row is: a gallery image, an MLR query or an HR reference query."""

    GALLERY = 0
    QUERY = 1
    HR_QUERY = 2


#: How an unseen or estimated rate gets a known level (see :func:`assign_level`).
LevelPolicy = Literal["nearest", "lower", "higher"]

#: level assignment policies accepted by :func:`assign_level`
LEVEL_POLICIES: tuple[str, ...] = get_args(LevelPolicy)

# Relative tolerance for "this rate equals a known rate" and for log-scale ties, so that an
# estimated rate such as 256 / 128.0000001 still lands on rate 2.
_REL_TOL = 1e-9

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


def estimate_rate(height: float, reference_height: float) -> float:
    """Estimated downsampling rate of a real image: ``r_est = h_ref / h`` (paper §V-F)."""
    if not height > 0:
        raise ValueError(f"height: expected a positive image height, got {height}")
    if not reference_height > 0:
        raise ValueError(f"reference_height: expected a positive height, got {reference_height}")
    return float(reference_height) / float(height)


def assign_level(rate: float, rates: Sequence[float], policy: str = "nearest") -> int:
    """Level (1..m) of an image with downsampling ``rate``, which may be an unseen rate.

    * ``"nearest"``: the known rate nearest in log scale; an exact tie goes to the lower
      resolution (the larger rate), e.g. rates [2, 4] and r = sqrt(8) -> rate 4.
    * ``"lower"``: the smallest known rate >= ``rate`` (next lower resolution), clipped to the
      largest known rate.
    * ``"higher"``: the largest known rate <= ``rate`` (next higher resolution), clipped to the
      smallest known rate.

    A rate equal to a known rate (within 1e-9 relative) always gets that rate's level.
    """
    ordered = normalize_rates(rates)
    m = len(ordered)
    value = float(rate)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"rate: expected a positive finite rate, got {rate}")
    if policy not in LEVEL_POLICIES:
        raise ValueError(
            f"level_policy: unknown value {policy!r}; choose one of {list(LEVEL_POLICIES)}"
        )

    for i, known in enumerate(ordered):
        if math.isclose(value, known, rel_tol=_REL_TOL):
            return m - i

    if policy == "lower":
        index = next((i for i, known in enumerate(ordered) if known > value), m - 1)
    elif policy == "higher":
        index = next((i for i in range(m - 1, -1, -1) if ordered[i] < value), 0)
    else:
        log_rate = math.log(value)
        distances = [abs(math.log(known) - log_rate) for known in ordered]
        best = min(distances)
        # the last index among (numerically) tied candidates = the largest rate = lower resolution
        index = max(
            i
            for i, d in enumerate(distances)
            if math.isclose(d, best, rel_tol=_REL_TOL, abs_tol=1e-12)
        )
    return m - index


def query_level(
    height: int,
    rates: Sequence[float],
    reference_height: float,
    policy: str = "nearest",
    rate: float | None = None,
    width: int | None = None,
    reference_width: float | None = None,
) -> tuple[float, int]:
    """(rate, level) of a query crop: the given rate, or one estimated from its size.

    With ``width`` and ``reference_width`` the rate is the geometric mean of the height and
    width ratios (the ratio of the areas' square roots): a crop cut off at the knees or a
    squeezed box is not taken for a much blurrier one, as its height alone would say.
    """
    if rate is not None:
        value = float(rate)
    elif width is not None and reference_width:
        value = math.sqrt(
            estimate_rate(height, reference_height) * estimate_rate(width, reference_width)
        )
    else:
        value = estimate_rate(height, reference_height)
    return value, assign_level(value, rates, policy)


def prefix_lengths(split_sizes: Sequence[int]) -> list[int]:
    """Embedding length of each level (1..m at index 0..m-1): the running sums of the
    sub-vector sizes."""
    lengths, total = [], 0
    for size in split_sizes:
        total += int(size)
        lengths.append(total)
    return lengths
