"""One embedding per level from a tracklet's frames.

A frame at level ``l`` carries the first ``l`` sub-vectors of the varying-length embedding, so
it supports every level ``k <= l``. For level ``k`` a tracklet pools the first ``k`` sub-vectors
of the frames that support it:

* ``average``: their mean;
* ``max``: their element-wise maximum;
* ``level-aware``: their mean weighted by how much of the level each frame carries, the ratio
  of the level's rate to the frame's estimated rate: a frame sharper than the level (a person
  close to the camera) counts more than one that only reached the level by rounding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rareid.levels import level_to_rate, prefix_lengths

POOLINGS = ("average", "max", "level-aware")
#: What ``rareid tracks search`` and ``link`` pool with unless told otherwise (the best of the
#: three on the built-in video benchmark, docs/tracklets.md).
DEFAULT_POOLING = "level-aware"


@dataclass(frozen=True)
class PooledTrack:
    """A tracklet's pooled embeddings: ``vectors[k - 1]`` is level ``k``'s, zero-padded to the
    full dimension (zero where no frame supports the level); ``support[k - 1]`` counts the
    frames at or above level ``k``; ``histogram[k - 1]`` the frames at level ``k``."""

    vectors: np.ndarray  # (m, d) float32
    support: np.ndarray  # (m,) int
    histogram: np.ndarray  # (m,) int


def prefix_bounds(split_sizes: Sequence[int], num_levels: int) -> list[int]:
    """End of each level's prefix in the embedding: level ``k`` uses ``[:bounds[k - 1]]``. A
    model without a varying-length embedding has one block, used whole at every level."""
    ends = prefix_lengths(split_sizes)
    return ends if len(ends) == num_levels else [ends[-1]] * num_levels


def frame_weights(
    levels: np.ndarray, rates: np.ndarray, level: int, known_rates: Sequence[float]
) -> np.ndarray:
    """``level-aware`` weights of frames for ``level``: the level's rate over each frame's rate
    (the frame's own level's rate when its rate was not estimated)."""
    target = level_to_rate(level, known_rates)
    own = np.array(
        [
            rate
            if math.isfinite(rate) and rate > 0
            else level_to_rate(int(frame_level), known_rates)
            for rate, frame_level in zip(rates.tolist(), levels.tolist(), strict=True)
        ],
        dtype=np.float64,
    )
    return target / own


def pool_track(
    embeddings: np.ndarray,
    levels: np.ndarray,
    rates: np.ndarray,
    bounds: Sequence[int],
    known_rates: Sequence[float],
    pooling: str = DEFAULT_POOLING,
) -> PooledTrack:
    """Pool one tracklet's zero-padded frame embeddings (N, d) at their levels (N,); level
    ``k`` uses the first ``bounds[k - 1]`` dimensions (:func:`prefix_bounds`)."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling: expected one of {list(POOLINGS)}, got {pooling!r}")
    levels = np.asarray(levels, dtype=np.int64)
    rates = np.asarray(rates, dtype=np.float64)
    num_levels = len(bounds)
    vectors = np.zeros((num_levels, embeddings.shape[1]), dtype=np.float32)
    support = np.zeros(num_levels, dtype=np.int64)
    histogram = np.bincount(levels - 1, minlength=num_levels)[:num_levels]
    for level in range(1, num_levels + 1):
        chosen = levels >= level
        support[level - 1] = int(chosen.sum())
        if not chosen.any():
            continue
        prefix = embeddings[chosen, : bounds[level - 1]].astype(np.float64)
        if pooling == "average":
            pooled = prefix.mean(axis=0)
        elif pooling == "max":
            pooled = prefix.max(axis=0)
        else:
            weights = frame_weights(levels[chosen], rates[chosen], level, known_rates)
            pooled = (weights[:, None] * prefix).sum(axis=0) / weights.sum()
        vectors[level - 1, : bounds[level - 1]] = pooled
    return PooledTrack(vectors, support, histogram)


def shared_level(first: np.ndarray, second: np.ndarray, min_frames: int) -> tuple[int, bool]:
    """The highest level both tracklets support with at least ``min_frames`` frames each, and
    ``True``; ``(1, False)`` when no level has enough frames on both sides (every frame
    supports level 1, so the comparison falls back to it and says so)."""
    enough = (first >= min_frames) & (second >= min_frames)
    found = np.flatnonzero(enough)
    return (int(found[-1]) + 1, True) if found.size else (1, False)
