"""Constants, seeded random streams and OpenCV coordinate helpers shared by the renderer."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import numpy as np

#: Native (height, width) of every synthetic crop.
IMAGE_SIZE: tuple[int, int] = (128, 64)
JPEG_QUALITY = 95
#: Bumped whenever the pictures change, so ``ensure_synthetic_dataset`` rewrites old folders.
GENERATOR_VERSION = 1

_H, _W = IMAGE_SIZE
_PAD = 8  # margin of the per-identity torso texture tile (covers the +-4 px translation jitter)
_SHIFT = 4  # cv2 sub-pixel drawing: coordinates are fixed point with 4 fractional bits
_ONE = 1 << _SHIFT
_BG_WIDTH = 192  # per-camera background panorama; each image crops a random 64 px window
_NOISE_BANK = 16  # pre-drawn Gaussian noise fields per camera

# Kinds of random streams (first entropy word after the seed) so streams never collide.
_K_PARTITION, _K_GROUP, _K_IDENT, _K_CAMERA, _K_IMAGE, _K_LAYOUT, _K_DISTRACTOR, _K_JUNK = range(8)

VIEW_FRONT, VIEW_BACK, VIEW_LEFT, VIEW_RIGHT = 0, 1, 2, 3

# Torso textures: zero-mean +-1 modulation patterns with 1-2 px structure, so they average away
# when the image is downsampled by >= 2 (INTER_AREA) but are plain to see at full resolution.
_TEXTURES = ("plain", "hstripe1", "hstripe2", "vstripe1", "vstripe2", "checks", "dots")
_LOGO_SHAPES = ("square", "circle", "triangle", "diamond")

Color = tuple[float, float, float]


def _rng(seed: int, *words: int) -> np.random.Generator:
    """A Generator(PCG64) that depends only on (seed, words): order/parallelism independent."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *words])))


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float64) * 255.0


def _tup(c: np.ndarray) -> Color:
    c = np.clip(c, 0, 255)
    return (float(c[0]), float(c[1]), float(c[2]))


def _pt(x: float, y: float) -> tuple[int, int]:
    return (round(x * _ONE), round(y * _ONE))


def _poly(points: Sequence[tuple[float, float]]) -> np.ndarray:
    return np.round(np.asarray(points, dtype=np.float64) * _ONE).astype(np.int32)
