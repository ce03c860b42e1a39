"""Low-resolution synthesis and resolution levels of real images (paper §III-A, §V-F).

Pure numpy + OpenCV (no torch), so that it can run anywhere: data workers, notebooks, scripts.

* :func:`degrade` downsamples a native HR image by a rate ``r`` (HR side / LR side) and returns it
  at its LR size -- what a low-resolution camera would have seen.
* :func:`synthesize_lowres` then brings it back to the network input size with bilinear
  interpolation, as the paper does for every image, HR or LR.
* :func:`rareid.levels.estimate_rate` / :func:`rareid.levels.assign_level` give a real (not
  synthesised) image its level.

OpenCV's resize is deterministic (fixed-point arithmetic for uint8), so the same rate gives the
same pixels on any machine; the random choice of rates is seeded (:func:`sample_rates`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import cv2
import numpy as np

#: Downsampling interpolation of LR synthesis (OpenCV's ``INTER_AREA`` by default).
Interpolation = Literal["area", "linear", "cubic", "nearest", "lanczos"]

#: interpolation names accepted by :func:`degrade` -> OpenCV flags
INTERPOLATIONS: dict[str, int] = {
    "area": cv2.INTER_AREA,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "nearest": cv2.INTER_NEAREST,
    "lanczos": cv2.INTER_LANCZOS4,
}


def interpolation_flag(interpolation: str) -> int:
    """OpenCV flag of an interpolation name; unknown name -> ValueError listing the valid ones."""
    try:
        return INTERPOLATIONS[interpolation]
    except (KeyError, TypeError):
        raise ValueError(
            f"interpolation: unknown value {interpolation!r}; choose one of {sorted(INTERPOLATIONS)}"
        ) from None


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        shape = getattr(image, "shape", None)
        raise ValueError(f"image: expected a non-empty HxW or HxWxC numpy array, got shape {shape}")


def _check_rate(rate: float) -> float:
    value = float(rate)
    if not math.isfinite(value) or value < 1:
        raise ValueError(
            f"rate: expected a finite downsampling rate >= 1 (HR side / LR side), got {rate}"
        )
    return value


def lowres_size(height: int, width: int, rate: float) -> tuple[int, int]:
    """(H, W) of an image of native size ``height`` x ``width`` downsampled by ``rate``.

    ``round(H / r)``, ``round(W / r)`` (Python rounding), never below 1 pixel.
    """
    rate = _check_rate(rate)
    return max(1, round(height / rate)), max(1, round(width / rate))


def degrade(image: np.ndarray, rate: float, interpolation: str = "area") -> np.ndarray:
    """Downsample a native image by ``rate`` and return it at its low-resolution size.

    ``rate = 1`` returns the input array itself (no copy). The default ``INTER_AREA`` averages
    the pixels that fall into each LR pixel, which is how a coarser sensor integrates light.
    """
    _check_image(image)
    flag = interpolation_flag(interpolation)
    height, width = image.shape[:2]
    out_h, out_w = lowres_size(height, width, rate)
    if (out_h, out_w) == (height, width):
        return image
    return cv2.resize(image, (out_w, out_h), interpolation=flag)


def synthesize_lowres(
    image: np.ndarray,
    rate: float,
    out_size: tuple[int, int],
    interpolation: str = "area",
) -> np.ndarray:
    """:func:`degrade` then bilinear resize to ``out_size`` = (H, W) (paper §III-A).

    With ``rate = 1`` this is just the bilinear resize of the native image to ``out_size``.
    """
    out_h, out_w = (int(s) for s in out_size)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"out_size: expected positive (H, W), got {tuple(out_size)}")
    low = degrade(image, rate, interpolation)
    if low.shape[:2] == (out_h, out_w):
        return low
    return cv2.resize(low, (out_w, out_h), interpolation=cv2.INTER_LINEAR)


def sample_rates(n: int, rates: Sequence[float], seed: int | Sequence[int]) -> np.ndarray:
    """``n`` rates drawn uniformly (with replacement) from ``rates``; same seed, same draw.

    ``seed`` may be an int or a sequence of ints (e.g. ``(seed, trial)``), fed to numpy's
    ``SeedSequence`` so that every (seed, trial) pair gets an independent stream.
    """
    values = np.asarray([float(r) for r in rates], dtype=np.float64)
    if values.size == 0:
        raise ValueError("rates: expected at least one rate to sample from")
    if n < 0:
        raise ValueError(f"n: expected a non-negative number of samples, got {n}")
    rng = np.random.default_rng(seed)
    return values[rng.integers(0, values.size, size=int(n))]
