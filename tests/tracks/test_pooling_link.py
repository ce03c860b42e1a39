"""Pooling per level, the shared level of two tracklets, and cross-camera linking, on
hand-made embeddings whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from rareid.tracks.link import link_tracks, overlaps
from rareid.tracks.match import track_distances
from rareid.tracks.pooling import pool_track, prefix_bounds, shared_level

RATES = (1.0, 2.0, 3.0, 4.0)
BOUNDS = prefix_bounds([1, 1, 1, 1], 4)


def _padded(rows: list[list[float]], levels: list[int]) -> np.ndarray:
    """Zero-padded embeddings: a level-l frame keeps its first l values."""
    out = np.asarray(rows, np.float32)
    for row, level in enumerate(levels):
        out[row, level:] = 0
    return out


def test_prefix_bounds_of_a_single_block_model() -> None:
    assert prefix_bounds([2, 3, 1, 2], 4) == [2, 5, 6, 8]
    assert prefix_bounds([8], 4) == [8, 8, 8, 8]


def test_average_and_max_pool_only_the_frames_that_support_a_level() -> None:
    levels = [4, 1, 2]
    embeddings = _padded([[1, 1, 1, 1], [3, 9, 9, 9], [5, 5, 9, 9]], levels)
    rates = np.array([1.0, 4.0, 3.0])
    average = pool_track(embeddings, np.array(levels), rates, BOUNDS, RATES, "average")
    assert average.support.tolist() == [3, 2, 1, 1]
    assert average.histogram.tolist() == [1, 1, 0, 1]
    assert average.vectors[0].tolist() == [3, 0, 0, 0]  # level 1: every frame's first value
    assert average.vectors[1].tolist() == [3, 3, 0, 0]  # level 2: frames at levels 4 and 2
    assert average.vectors[3].tolist() == [1, 1, 1, 1]  # level 4: the HR frame only
    maximum = pool_track(embeddings, np.array(levels), rates, BOUNDS, RATES, "max")
    assert maximum.vectors[1].tolist() == [5, 5, 0, 0]


def test_level_aware_weights_sharp_frames_up() -> None:
    levels = np.array([4, 1])
    embeddings = _padded([[0, 0, 0, 0], [8, 0, 0, 0]], [4, 1])
    pooled = pool_track(embeddings, levels, np.array([1.0, 4.0]), BOUNDS, RATES, "level-aware")
    # level 1 (rate 4): the HR frame carries weight 4 / 1, the rate-4 frame 4 / 4
    assert pooled.vectors[0, 0] == pytest.approx(8 * 1 / 5)
    with pytest.raises(ValueError, match="pooling"):
        pool_track(embeddings, levels, np.array([1.0, 4.0]), BOUNDS, RATES, "median")


def test_shared_level_needs_min_frames_on_both_sides() -> None:
    assert shared_level(np.array([9, 5, 3, 1]), np.array([9, 9, 4, 4]), 3) == (3, True)
    assert shared_level(np.array([9, 5, 3, 1]), np.array([9, 9, 4, 4]), 4) == (2, True)
    assert shared_level(np.array([2, 0, 0, 0]), np.array([9, 9, 4, 4]), 3) == (1, False)


def test_track_distances_use_the_shared_level_prefix() -> None:
    sharp = pool_track(
        _padded([[1, 1, 1, 1]] * 3, [4] * 3), np.full(3, 4), np.ones(3), BOUNDS, RATES
    )
    blurry = pool_track(
        _padded([[1, 5, 5, 5]] * 3, [2] * 3), np.full(3, 2), np.full(3, 2.0), BOUNDS, RATES
    )
    pairs = track_distances([sharp], [sharp, blurry], BOUNDS, min_frames=3)
    assert pairs.levels.tolist() == [[4, 2]]
    assert pairs.distances[0].tolist() == pytest.approx([0.0, 16.0])  # (1 - 5)^2 on 2 dims
    assert pairs.query_frames.tolist() == [[3, 3]] and pairs.enough.all()


def _pairs(matrix: list[list[float]]):
    values = np.asarray(matrix, np.float64)
    shape = values.shape
    from rareid.tracks.match import TrackDistances

    return TrackDistances(
        values, np.ones(shape, int), np.ones(shape, int), np.ones(shape, int), np.ones(shape, bool)
    )


def test_link_joins_mutual_matches_and_respects_the_threshold() -> None:
    cameras = ["a", "a", "b", "b"]
    spans = [(1, 10), (5, 20), (1, 10), (30, 40)]
    matrix = [[0, 9, 1, 8], [9, 0, 7, 2], [1, 7, 0, 9], [8, 2, 9, 0]]
    identities, refused = link_tracks(_pairs(matrix), cameras, spans)
    # b0 and b1 do not overlap, so they are a candidate too; joining them would join a0 and a1
    assert identities == [1, 2, 1, 2] and refused == 1
    strict, _ = link_tracks(_pairs(matrix), cameras, spans, threshold=1.5)
    assert strict == [1, 2, 1, 3]


def test_link_never_merges_overlapping_tracks_of_one_camera() -> None:
    # a0 and a1 overlap in time; both are closest to b0: a chain would put them together
    cameras = ["a", "a", "b", "c"]
    spans = [(1, 10), (5, 20), (1, 10), (1, 10)]
    matrix = [[0, 9, 1, 9], [9, 0, 2, 1], [1, 2, 0, 1.5], [9, 1, 1.5, 0]]
    identities, refused = link_tracks(_pairs(matrix), cameras, spans)
    assert identities[0] != identities[1]
    assert refused >= 1
    assert overlaps(None, (1, 2)) and not overlaps((1, 4), (5, 9))
