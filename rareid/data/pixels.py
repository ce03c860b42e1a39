"""uint8 images to the normalised float32 arrays a network takes, in NumPy and OpenCV alone:
training (through :mod:`rareid.data.transforms`) and a torch-free serving runtime share one
normalisation, so an exported model sees the numbers it was trained on."""

from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to uint8 HxWx3 RGB with OpenCV (training, evaluation and the
    torch-free runtime read images the same way); an unreadable file is an OSError naming it."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(
            f"could not read image {str(path)!r}: the file is missing, unreadable or corrupt; "
            "remove or replace it"
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def check_stats(name: str, values: Sequence[float], positive: bool) -> np.ndarray:
    """Three finite per-channel statistics (positive ones for ``std``) as a float64 array."""
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size != 3 or not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: expected 3 finite per-channel values (R, G, B), got {values!r}")
    if positive and np.any(array <= 0):
        raise ValueError(f"{name}: every value must be > 0, got {values!r}")
    return array


class ArrayNormalize:
    """uint8 HxWx3 -> contiguous float32 (3, H, W) array ``(x / 255 - mean) / std``.

    Per channel, a 256-entry lookup table (``cv2.LUT``) does the uint8 -> float conversion and
    both arithmetic steps in one pass, writing straight into the channel plane of the output:
    no float temporaries, no separate HWC -> CHW transpose.
    """

    def __init__(
        self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
    ) -> None:
        mean_arr = check_stats("mean", mean, positive=False)
        std_arr = check_stats("std", std, positive=True)
        self.mean = tuple(float(v) for v in mean_arr)
        self.std = tuple(float(v) for v in std_arr)
        levels = np.arange(256, dtype=np.float64) / 255.0
        self.luts = [
            ((levels - mean_arr[c]) / std_arr[c]).astype(np.float32).reshape(256, 1)
            for c in range(3)
        ]

    def array(self, image: np.ndarray) -> np.ndarray:
        """The normalised (3, H, W) float32 array of ``image``."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"Normalize: expected a uint8 HxWx3 image, got {image.dtype} {image.shape}"
            )
        height, width = image.shape[:2]
        out = np.empty((3, height, width), dtype=np.float32)
        for channel, plane in enumerate(cv2.split(image)):
            cv2.LUT(plane, self.luts[channel], dst=out[channel])
        return out
