"""Checks of a query or gallery crop before it is embedded: a box too small to hold a person,
or not a person's shape, is flagged rather than silently ranked."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: Query crops with a side shorter than this (pixels) carry almost no identity: flagged.
MIN_CROP_HEIGHT = 16
MIN_CROP_WIDTH = 8
#: Height / width of a standing person's crop lies in this range; outside it a crop is flagged
#: (a cut-off or sideways box is not a person seen at a lower resolution).
PERSON_ASPECT_RANGE = (1.2, 4.5)


@dataclass(frozen=True)
class CropCheck:
    """What is odd about a query crop (empty: nothing)."""

    flags: tuple[str, ...]

    def __str__(self) -> str:
        return "; ".join(self.flags)


def check_crop(
    height: int,
    width: int,
    min_height: int = MIN_CROP_HEIGHT,
    min_width: int = MIN_CROP_WIDTH,
    aspect_range: Sequence[float] = PERSON_ASPECT_RANGE,
) -> CropCheck:
    """Flags of a degenerate crop: too small to hold a person, or not a person's shape.

    Examples::

        >>> check_crop(10, 8).flags
        ('tiny (10x8 px, minimum 16x8)',)
        >>> str(check_crop(128, 64))  # a person's crop: nothing to say
        ''
    """
    flags = []
    if height < min_height or width < min_width:
        flags.append(f"tiny ({height}x{width} px, minimum {min_height}x{min_width})")
    aspect = height / max(width, 1)
    low, high = aspect_range
    if not low <= aspect <= high:
        flags.append(f"aspect {aspect:.2f} (height/width; a person's is {low:g}-{high:g})")
    return CropCheck(tuple(flags))
