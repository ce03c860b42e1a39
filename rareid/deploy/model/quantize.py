"""int8 by onnxruntime static quantisation (QDQ, per-channel weights): activation ranges are
calibrated on the user's own crops, each at one of the model's levels (degraded to its rate),
so that the masks and short prefixes of low-resolution queries are calibrated too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rareid.data.lowres import degrade
from rareid.data.pixels import read_image
from rareid.deploy.model.arrays import ArrayPreprocess, list_images
from rareid.levels import level_to_rate

#: Calibration crops per forward pass.
CALIBRATION_BATCH = 16


def calibration_batches(
    folder: str | Path, samples: int, preprocess: ArrayPreprocess, rates: list[float]
) -> tuple[list[dict[str, np.ndarray]], int]:
    """Up to ``samples`` crops of ``folder`` (sorted names, first ones) as input batches, each
    batch at one level, the levels taken in turn; and how many files were unreadable."""
    paths = list_images(folder)
    if not paths:
        raise ValueError(f"--calibration: no jpg/png/bmp/webp image under {str(folder)!r}")
    images, unreadable = [], 0
    for path in paths[:samples]:
        try:
            images.append(read_image(path))
        except OSError:
            unreadable += 1
    if not images:
        raise ValueError(f"--calibration: none of the images under {str(folder)!r} is readable")
    batches = []
    for number, start in enumerate(range(0, len(images), CALIBRATION_BATCH)):
        level = number % len(rates) + 1
        rate = level_to_rate(level, rates)
        chunk = [degrade(image, rate) for image in images[start : start + CALIBRATION_BATCH]]
        batches.append(
            {
                "images": preprocess.arrays(chunk),
                "levels": np.full(len(chunk), level, dtype=np.int64),
            }
        )
    return batches, unreadable


def quantize_int8(
    source: str | Path, out: str | Path, batches: list[dict[str, np.ndarray]]
) -> Path:
    """Write the int8 QDQ model of the float32 ONNX ``source`` to ``out`` (uint8 activations,
    int8 per-channel weights: the pairing onnxruntime's x86 kernels run)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.items: Iterator[dict[str, Any]] = iter(batches)

        def get_next(self) -> dict[str, Any] | None:
            return next(self.items, None)

    quantize_static(
        str(source),
        str(out),
        Batches(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return Path(out)
