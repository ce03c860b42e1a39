"""'Same person?' thresholds for tracklet distances, from tracklets labelled with a person.

Tracklet distances are distances between pooled tracklets at the level a pair is compared at,
not between single crops, so the thresholds of crops do not apply: this calibrates on pairs of
labelled tracklets of different cameras (the pairs ``rareid tracks search`` and ``link``
rank), per level used, with the crops' calibration (:func:`calibrate_levels`). The pooling
and ``min_frames`` the distances were computed with are stored with the thresholds; a search
or link with other ones gets no verdict from them (:func:`track_threshold` says why).
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rareid.deploy.verify.calibrate import DEFAULT_FARS, DEFAULT_MIN_TAR, calibrate_levels
from rareid.deploy.verify.verdicts import level_threshold
from rareid.tracks.index import TrackIndex
from rareid.tracks.match import track_distances
from rareid.tracks.tracklet import TrackInputError

#: Accepted names of the person column of a labels CSV (``identities.csv`` of ``rareid tracks
#: synth`` calls it ``pid``).
PERSON_COLUMNS = ("person", "pid", "person_id", "identity")


@dataclass
class TrackLabels:
    """Person of each labelled tracklet (by its position in the index), and what was left out."""

    person_of: dict[int, str]
    unlabelled_rows: int = 0
    unknown: Counter = field(default_factory=Counter)

    @property
    def identities(self) -> int:
        return len(set(self.person_of.values()))


def read_track_labels(path: str | os.PathLike, index: TrackIndex) -> TrackLabels:
    """A CSV of ``camera,track_id,person`` rows (a header names the columns; ``pid`` is read as
    ``person``). A row naming a tracklet the index lacks, or a tracklet twice, is a
    :class:`TrackInputError` naming the line; a row with an empty person is counted and
    skipped."""
    file = Path(path)
    if not file.is_file():
        raise TrackInputError(
            f"labels {str(file)!r} do not exist: give a camera,track_id,person CSV"
        )
    position = {key: number for number, key in enumerate(index.keys())}
    labels = TrackLabels({})
    with open(file, newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        names = [name.strip() for name in reader.fieldnames or []]
        person = next((name for name in PERSON_COLUMNS if name in names), None)
        if "camera" not in names or "track_id" not in names or person is None:
            raise TrackInputError(
                f"{file}:1: expected a header with camera, track_id and person (or pid), "
                f"got {','.join(names) or 'nothing'}"
            )
        for line, row in enumerate(reader, start=2):
            row = {(key or "").strip(): (value or "").strip() for key, value in row.items()}
            key = (row["camera"], row["track_id"])
            if key not in position:
                raise TrackInputError(
                    f"{file}:{line}: tracklet {key[0]}/{key[1]} is not in the index "
                    "(index it first, or leave the row out)"
                )
            if position[key] in labels.person_of:
                raise TrackInputError(
                    f"{file}:{line}: tracklet {key[0]}/{key[1]} is labelled twice"
                )
            if not row[person]:
                labels.unlabelled_rows += 1
                continue
            labels.person_of[position[key]] = row[person]
    return labels


def labelled_pair_distances(
    index: TrackIndex, labels: TrackLabels, pooling: str, min_frames: int
) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Genuine and impostor distances per level used, over the pairs of labelled tracklets of
    different cameras (each pair once)."""
    tracks = sorted(labels.person_of)
    pooled = index.pooled(pooling)
    chosen = [pooled[track] for track in tracks]
    pairs = track_distances(chosen, chosen, index.bounds, min_frames, index.metric)
    cameras = np.asarray([index.cameras[track] for track in tracks])
    persons = np.asarray([labels.person_of[track] for track in tracks])
    upper = np.triu(np.ones((len(tracks), len(tracks)), bool), k=1)
    usable = upper & (cameras[:, None] != cameras[None, :])
    same = persons[:, None] == persons[None, :]
    genuine: dict[int, np.ndarray] = {}
    impostor: dict[int, np.ndarray] = {}
    for level in range(1, index.num_levels + 1):
        at_level = usable & (pairs.levels == level)
        genuine[level] = pairs.distances[at_level & same]
        impostor[level] = pairs.distances[at_level & ~same]
    return genuine, impostor


def calibrate_tracks(
    index: TrackIndex,
    labels: TrackLabels,
    pooling: str,
    min_frames: int,
    fars: Sequence[float] = DEFAULT_FARS,
    min_tar: float = DEFAULT_MIN_TAR,
    far_per_search: float | None = None,
) -> tuple[dict[str, Any], tuple[dict[int, np.ndarray], dict[int, np.ndarray]]]:
    """The calibration to store in the index (per level used, with the pooling, ``min_frames``
    and model it holds for) and the genuine and impostor distances it came from."""
    genuine, impostor = labelled_pair_distances(index, labels, pooling, min_frames)
    calibration = calibrate_levels(
        genuine,
        impostor,
        fars,
        min_tar=min_tar,
        gallery_size=len(index),
        far_per_search=far_per_search,
    )
    calibration.update(
        kind="tracklets",
        pooling=pooling,
        min_frames=int(min_frames),
        metric=index.metric,
        checkpoint_sha256=index.checkpoint_sha256,
        rates=list(index.known_rates),
    )
    return calibration, (genuine, impostor)


def track_threshold(
    calibration: dict[str, Any] | None, level: int, far: float, pooling: str, min_frames: int
) -> tuple[float | None, str]:
    """(threshold, "") for a pair compared at ``level`` when the stored calibration holds for
    ``pooling`` and ``min_frames``, else (None, why)."""
    if not calibration:
        return None, "no calibration: run rareid calibrate --tracks-index with --labels"
    if calibration.get("pooling") != pooling or calibration.get("min_frames") != min_frames:
        return None, (
            f"calibrated for --pooling {calibration.get('pooling')} --min-frames "
            f"{calibration.get('min_frames')}, not {pooling} / {min_frames}"
        )
    return level_threshold(calibration, level, far)


def pair_thresholds(
    calibration: dict[str, Any] | None,
    levels: np.ndarray,
    far: float,
    pooling: str,
    min_frames: int,
) -> tuple[np.ndarray, Counter]:
    """The threshold of every pair from the level it was compared at (NaN where none holds)
    and, counted over pairs, why none does."""
    thresholds = np.full(levels.shape, np.nan)
    reasons: Counter = Counter()
    for level in np.unique(levels).tolist():
        threshold, reason = track_threshold(calibration, int(level), far, pooling, min_frames)
        where = levels == level
        if threshold is None:
            reasons[f"level {level}: {reason}"] += int(where.sum())
        else:
            thresholds[where] = threshold
    return thresholds, reasons


def describe_reasons(reasons: Counter) -> str:
    """One line: the pairs that get no verdict, and why."""
    return "; ".join(f"{count} pairs at {why}" for why, count in sorted(reasons.items()))
