"""``TrackIndex``: the frame embeddings of many tracklets, with their levels, in one file.

Frames are stored, not pooled vectors, so that the pooling is chosen when searching or linking
and one index serves all three. Each frame is embedded at the level its crop's size implies
(the estimator of ``rareid search``, against a reference size: by default the 95th percentile
of the indexed crops' heights and widths, a person close to a camera). The file is a plain
``.npz`` (arrays and one JSON string) that loads without pickle; it also keeps a few of each
tracklet's largest crops as thumbnails for rank sheets.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rareid.tracks.pooling import DEFAULT_POOLING, PooledTrack, pool_track, prefix_bounds
from rareid.tracks.tracklet import Tracklet

FORMAT = "rareid-tracks"
VERSION = 1
#: Largest crops of each tracklet kept as thumbnails, and their size (height, width).
THUMBNAILS = 4
THUMBNAIL_SIZE = (96, 48)
#: Percentile of the indexed crops' sizes taken as the size of a rate-1 crop.
REFERENCE_PERCENTILE = 95.0


class TrackIndexError(ValueError):
    """A tracks index file that cannot be used (one line naming it)."""


@dataclass
class TrackIndex:
    """Frame embeddings of tracklets: per-frame arrays (``track_of`` says whose) and
    per-tracklet names and thumbnails."""

    embeddings: np.ndarray  # (N, d) float32, zero-padded at each frame's level
    levels: np.ndarray  # (N,) int64, 1..m
    rates: np.ndarray  # (N,) float64, estimated rate of each frame
    frames: np.ndarray  # (N,) int64, 1-based frame number or -1
    boxes: np.ndarray  # (N, 4) int64, (left, top, width, height) or -1
    sizes: np.ndarray  # (N, 2) int64, native (height, width)
    track_of: np.ndarray  # (N,) int64, position of the frame's tracklet
    cameras: list[str]
    track_ids: list[str]
    thumbnails: np.ndarray  # (T, THUMBNAILS, h, w, 3) uint8, black where absent
    known_rates: list[float]
    split_sizes: list[int]
    metric: str = "euclidean"
    level_policy: str = "nearest"
    reference: tuple[float, float] = (0.0, 0.0)  # (height, width) of a rate-1 crop
    checkpoint_path: str = ""
    checkpoint_sha256: str = ""
    problems: list[str] = field(default_factory=list)
    #: thresholds of ``rareid calibrate --tracks-index`` (:mod:`rareid.tracks.calibration`)
    calibration: dict | None = None

    def __len__(self) -> int:
        return len(self.track_ids)

    @property
    def num_levels(self) -> int:
        return len(self.known_rates)

    @property
    def bounds(self) -> list[int]:
        return prefix_bounds(self.split_sizes, self.num_levels)

    def keys(self) -> list[tuple[str, str]]:
        return list(zip(self.cameras, self.track_ids, strict=True))

    def frame_rows(self, track: int) -> np.ndarray:
        return np.flatnonzero(self.track_of == track)

    def pooled(self, pooling: str = DEFAULT_POOLING) -> list[PooledTrack]:
        """Every tracklet pooled (:func:`rareid.tracks.pooling.pool_track`)."""
        result = []
        for track in range(len(self)):
            rows = self.frame_rows(track)
            result.append(
                pool_track(
                    self.embeddings[rows],
                    self.levels[rows],
                    self.rates[rows],
                    self.bounds,
                    self.known_rates,
                    pooling,
                )
            )
        return result

    def span(self, track: int) -> tuple[int, int] | None:
        frames = self.frames[self.frame_rows(track)]
        known = frames[frames >= 0]
        return (int(known.min()), int(known.max())) if known.size else None

    # ------------------------------------------------------------------ building
    @classmethod
    def build(
        cls,
        checkpoint: str | os.PathLike,
        tracks: Sequence[Tracklet],
        reference: tuple[float, float] | None = None,
        device: str = "cpu",
        batch_size: int = 64,
        model_and_preprocess: tuple[Any, Any] | None = None,
    ) -> TrackIndex:
        """Embed every frame of ``tracks`` at its estimated level with the checkpoint's model."""
        from rareid.tracks.model import file_sha256, load_model, read_checkpoint

        model, preprocess = model_and_preprocess or load_model(checkpoint, device)
        data = read_checkpoint(checkpoint).get("datamodule_hyper_parameters") or {}
        index = cls.empty(model, str(data.get("level_policy") or "nearest"))
        index.checkpoint_path = str(checkpoint)
        index.checkpoint_sha256 = file_sha256(checkpoint)
        index.add_tracks(model, preprocess, tracks, reference, batch_size)
        return index

    @classmethod
    def empty(cls, model: Any, level_policy: str = "nearest") -> TrackIndex:
        """An index with no tracklet for ``model`` (its rates, sub-vectors and distance)."""
        dim = sum(int(size) for size in model.split_sizes)
        return cls(
            embeddings=np.zeros((0, dim), np.float32),
            levels=np.zeros(0, np.int64),
            rates=np.zeros(0, np.float64),
            frames=np.zeros(0, np.int64),
            boxes=np.zeros((0, 4), np.int64),
            sizes=np.zeros((0, 2), np.int64),
            track_of=np.zeros(0, np.int64),
            cameras=[],
            track_ids=[],
            thumbnails=np.zeros((0, THUMBNAILS, *THUMBNAIL_SIZE, 3), np.uint8),
            known_rates=[float(rate) for rate in model.rates],
            split_sizes=[int(size) for size in model.distance_split_sizes],
            metric=str(getattr(model.hparams, "distance", "euclidean")),
            level_policy=level_policy,
        )

    def estimate_levels(self, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rates and levels of crops of native ``sizes`` (N, 2) against the index's reference,
        with the query estimator of ``rareid search``."""
        from rareid.tracks.model import query_level

        height, width = self.reference
        rates, levels = [], []
        for crop_height, crop_width in sizes.tolist():
            rate, level = query_level(
                int(crop_height),
                self.known_rates,
                height,
                self.level_policy,
                None,
                int(crop_width),
                width,
            )
            rates.append(rate)
            levels.append(level)
        return np.asarray(rates, np.float64), np.asarray(levels, np.int64)

    def add_tracks(
        self,
        model: Any,
        preprocess: Any,
        tracks: Sequence[Tracklet],
        reference: tuple[float, float] | None = None,
        batch_size: int = 64,
    ) -> tuple[int, int]:
        """Embed and append ``tracks``; one with the key (camera, track id) of a stored
        tracklet replaces it. Returns (added, replaced)."""
        from rareid.tracks.model import embed_images

        crops = [crop for track in tracks for crop in track.crops]
        sizes = np.asarray([crop.shape[:2] for crop in crops], np.int64).reshape(-1, 2)
        if reference is not None:
            self.reference = (float(reference[0]), float(reference[1]))
        elif not self.reference[0] and len(crops):
            self.reference = (
                float(np.percentile(sizes[:, 0], REFERENCE_PERCENTILE)),
                float(np.percentile(sizes[:, 1], REFERENCE_PERCENTILE)),
            )
        rates, levels = self.estimate_levels(sizes)
        embeddings = embed_images(model, preprocess, crops, levels.tolist(), batch_size).numpy()
        replaced = self._drop({track.key for track in tracks})
        first = len(self)
        owner = np.concatenate(
            [np.full(len(track), first + offset, np.int64) for offset, track in enumerate(tracks)]
            or [np.zeros(0, np.int64)]
        )
        self.embeddings = np.concatenate([self.embeddings, embeddings.astype(np.float32)])
        self.levels = np.concatenate([self.levels, levels])
        self.rates = np.concatenate([self.rates, rates])
        self.frames = np.concatenate(
            [
                self.frames,
                np.asarray([frame for track in tracks for frame in track.frames], np.int64),
            ]
        )
        self.boxes = np.concatenate(
            [
                self.boxes,
                np.asarray([box for track in tracks for box in track.boxes], np.int64).reshape(
                    -1, 4
                ),
            ]
        )
        self.sizes = np.concatenate([self.sizes, sizes])
        self.track_of = np.concatenate([self.track_of, owner])
        self.cameras += [track.camera for track in tracks]
        self.track_ids += [track.track_id for track in tracks]
        if tracks:
            pictures = np.stack([thumbnails(track) for track in tracks])
            self.thumbnails = np.concatenate([self.thumbnails, pictures])
        return len(tracks) - replaced, replaced

    def _drop(self, keys: set[tuple[str, str]]) -> int:
        gone = [position for position, key in enumerate(self.keys()) if key in keys]
        if not gone:
            return 0
        keep_tracks = np.setdiff1d(np.arange(len(self)), gone)
        keep_rows = np.isin(self.track_of, keep_tracks)
        renumber = np.full(len(self), -1, np.int64)
        renumber[keep_tracks] = np.arange(keep_tracks.size)
        for name in ("embeddings", "levels", "rates", "frames", "boxes", "sizes"):
            setattr(self, name, getattr(self, name)[keep_rows])
        self.track_of = renumber[self.track_of[keep_rows]]
        self.cameras = [self.cameras[position] for position in keep_tracks]
        self.track_ids = [self.track_ids[position] for position in keep_tracks]
        self.thumbnails = self.thumbnails[keep_tracks]
        return len(gone)

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> Path:
        """Write the index (``.npz``, no pickle); the file is replaced atomically."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "cameras": self.cameras,
            "track_ids": self.track_ids,
            "known_rates": self.known_rates,
            "split_sizes": self.split_sizes,
            "metric": self.metric,
            "level_policy": self.level_policy,
            "reference": list(self.reference),
            "checkpoint_path": self.checkpoint_path,
            "checkpoint_sha256": self.checkpoint_sha256,
            "problems": self.problems,
            "calibration": self.calibration,
        }
        temporary = target.with_name(target.name + ".part.npz")
        np.savez(
            temporary,
            meta=np.asarray(json.dumps(meta)),
            embeddings=self.embeddings,
            levels=self.levels,
            rates=self.rates,
            frames=self.frames,
            boxes=self.boxes,
            sizes=self.sizes,
            track_of=self.track_of,
            thumbnails=self.thumbnails,
        )
        os.replace(temporary, target)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrackIndex:
        """Read an index written by :meth:`save`; anything else is a :class:`TrackIndexError`."""
        file = Path(path)
        if not file.is_file():
            raise TrackIndexError(f"tracks index {str(file)!r} does not exist")
        try:
            with np.load(file, allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
            meta = json.loads(str(arrays.pop("meta")))
        except (OSError, ValueError, KeyError) as error:
            raise TrackIndexError(f"{str(file)!r} is not a tracks index: {error}") from None
        if meta.get("format") != FORMAT:
            raise TrackIndexError(
                f"{str(file)!r} is not a tracks index (written by `rareid tracks index`)"
            )
        return cls(
            **arrays,
            cameras=list(meta["cameras"]),
            track_ids=list(meta["track_ids"]),
            known_rates=[float(rate) for rate in meta["known_rates"]],
            split_sizes=[int(size) for size in meta["split_sizes"]],
            metric=meta["metric"],
            level_policy=meta["level_policy"],
            reference=tuple(meta["reference"]),
            checkpoint_path=meta["checkpoint_path"],
            checkpoint_sha256=meta["checkpoint_sha256"],
            problems=list(meta.get("problems", [])),
            calibration=meta.get("calibration"),
        )


def thumbnails(track: Tracklet) -> np.ndarray:
    """The tracklet's largest crops (ties: earliest), resized to ``THUMBNAIL_SIZE``."""
    out = np.zeros((THUMBNAILS, *THUMBNAIL_SIZE, 3), np.uint8)
    order = sorted(
        range(len(track)), key=lambda position: (-track.crops[position].shape[0], position)
    )[:THUMBNAILS]
    for slot, position in enumerate(sorted(order)):
        height, width = THUMBNAIL_SIZE
        out[slot] = cv2.resize(track.crops[position], (width, height), interpolation=cv2.INTER_AREA)
    return out
