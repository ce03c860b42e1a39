"""Distances between tracklets: each pair is compared at the highest level both support with
enough frames (squared Euclidean over that level's prefix, Eq. 2), and says which."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rareid.tracks.pooling import PooledTrack, shared_level

#: Frames a tracklet needs at or above a level for that level to be used by default (2 did
#: at least as well as 1 and 3 in every column of the video benchmark, docs/tracklets.md).
DEFAULT_MIN_FRAMES = 2


@dataclass(frozen=True)
class TrackDistances:
    """(Q, G) distances, the level each pair was compared at, the frames pooled on each side
    for that level, and whether both sides had ``min_frames`` frames there."""

    distances: np.ndarray
    levels: np.ndarray
    query_frames: np.ndarray
    gallery_frames: np.ndarray
    enough: np.ndarray


def _prefix(vectors: np.ndarray, end: int, metric: str) -> np.ndarray:
    part = vectors[:, :end].astype(np.float64)
    if metric == "cosine":
        norms = np.linalg.norm(part, axis=1, keepdims=True)
        part = part / np.maximum(norms, 1e-12)
    return part


def track_distances(
    queries: Sequence[PooledTrack],
    gallery: Sequence[PooledTrack],
    bounds: Sequence[int],
    min_frames: int = DEFAULT_MIN_FRAMES,
    metric: str = "euclidean",
) -> TrackDistances:
    """Every query tracklet against every gallery tracklet (:func:`shared_level` per pair)."""
    if min_frames < 1:
        raise ValueError(f"min_frames: expected a positive count, got {min_frames}")
    count_q, count_g = len(queries), len(gallery)
    shape = (count_q, count_g)
    levels = np.ones(shape, np.int64)
    enough = np.zeros(shape, bool)
    for row, query in enumerate(queries):
        for column, item in enumerate(gallery):
            levels[row, column], enough[row, column] = shared_level(
                query.support, item.support, min_frames
            )
    distances = np.zeros(shape, np.float64)
    query_frames = np.zeros(shape, np.int64)
    gallery_frames = np.zeros(shape, np.int64)
    for level in np.unique(levels):
        where = levels == level
        query_part = _prefix(
            np.stack([track.vectors[level - 1] for track in queries]), bounds[level - 1], metric
        )
        gallery_part = _prefix(
            np.stack([track.vectors[level - 1] for track in gallery]), bounds[level - 1], metric
        )
        squared = (
            (query_part**2).sum(1)[:, None]
            + (gallery_part**2).sum(1)[None, :]
            - 2.0 * query_part @ gallery_part.T
        )
        distances[where] = np.maximum(squared, 0.0)[where]
        support_q = np.array([track.support[level - 1] for track in queries])
        support_g = np.array([track.support[level - 1] for track in gallery])
        query_frames[where] = np.broadcast_to(support_q[:, None], shape)[where]
        gallery_frames[where] = np.broadcast_to(support_g[None, :], shape)[where]
    return TrackDistances(distances, levels, query_frames, gallery_frames, enough)
