"""One identity across cameras: link tracklets by thresholded, mutually consistent matches.

A pair of tracklets is a candidate when each is the other's nearest tracklet in the other's
camera (mutual nearest neighbours) and, with a threshold, their distance is at most it.
Candidates are merged from the closest up; a merge is refused when it would put two
tracklets of one camera that overlap in time (or whose times are unknown) under one identity:
one person is never in two places of one picture.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rareid.tracks.match import TrackDistances


def overlaps(first: tuple[int, int] | None, second: tuple[int, int] | None) -> bool:
    """Whether two frame spans share a frame; unknown spans count as overlapping."""
    if first is None or second is None:
        return True
    return first[0] <= second[1] and second[0] <= first[1]


def link_tracks(
    pairs: TrackDistances,
    cameras: Sequence[str],
    spans: Sequence[tuple[int, int] | None],
    threshold: float | np.ndarray | None = None,
) -> tuple[list[int], int]:
    """Global identity (1, 2, ...) of every tracklet, numbered in input order, and the number
    of merges refused because they would join overlapping tracklets of one camera.
    ``threshold`` is one distance or one per pair (NaN: that pair is never linked)."""
    count = len(cameras)
    distances = pairs.distances
    limit = None if threshold is None else np.broadcast_to(threshold, distances.shape)
    blocked = np.zeros((count, count), bool)
    for first in range(count):
        for second in range(count):
            if first == second or (
                cameras[first] == cameras[second] and overlaps(spans[first], spans[second])
            ):
                blocked[first, second] = True
    usable = np.where(blocked, np.inf, distances)
    nearest: dict[tuple[int, str], int] = {}
    for first in range(count):
        for camera in sorted(set(cameras)):
            columns = [
                other
                for other in range(count)
                if cameras[other] == camera and not blocked[first, other]
            ]
            if columns:
                nearest[(first, camera)] = min(
                    columns, key=lambda other: (usable[first, other], other)
                )
    edges = sorted(
        (float(usable[first, second]), first, second)
        for first in range(count)
        for second in range(first + 1, count)
        if nearest.get((first, cameras[second])) == second
        and nearest.get((second, cameras[first])) == first
        and np.isfinite(usable[first, second])
        and (limit is None or usable[first, second] <= limit[first, second])
    )
    members: dict[int, list[int]] = {track: [track] for track in range(count)}
    owner = list(range(count))
    refused = 0
    for _, first, second in edges:
        group_a, group_b = owner[first], owner[second]
        if group_a == group_b:
            continue
        if any(blocked[one, another] for one in members[group_a] for another in members[group_b]):
            refused += 1
            continue
        for track in members[group_b]:
            owner[track] = group_a
        members[group_a] += members.pop(group_b)
    numbers: dict[int, int] = {}
    return [numbers.setdefault(owner[track], len(numbers) + 1) for track in range(count)], refused
