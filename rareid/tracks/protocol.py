"""The ``mlr-video`` protocol: query tracklets degraded frame by frame by a schedule, ranked
against a gallery of HR tracklets; CMC and mAP per schedule, over trials (mean and std).

Schedules of a query tracklet's per-frame rates (``rates`` are the model's, e.g. 1..4):

* ``constant``: one rate for the whole tracklet, drawn per tracklet and trial;
* ``random``: a rate drawn for every frame (a person in and out of good views);
* ``ramp``: a person approaching the camera, ``r = max(rates)`` at the first frame down to 1
  at the last (the rates in between are unseen rates); it draws nothing, so its trials agree.

Each degraded frame gets its level from its size like any real crop (the estimator of
``rareid search``, against the HR frame size), is embedded at that level, and the tracklet is
pooled (:mod:`rareid.tracks.pooling`). ``single-frame`` is the crop path for comparison: one
random frame of each query tracklet against one random frame of each gallery tracklet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rareid.data.lowres import degrade
from rareid.evaluation.rank import evaluate_rank
from rareid.tracks.match import DEFAULT_MIN_FRAMES, track_distances
from rareid.tracks.pooling import POOLINGS, PooledTrack, pool_track, prefix_bounds

SCHEDULES = ("constant", "random", "ramp")
SINGLE_FRAME = "single-frame"


@dataclass
class VideoSet:
    """Query and gallery tracklets (lists of RGB uint8 frames) with identities and cameras."""

    queries: list[list[np.ndarray]]
    query_pids: list[int]
    query_cameras: list[int]
    gallery: list[list[np.ndarray]]
    gallery_pids: list[int]
    gallery_cameras: list[int]


def schedule_rates(
    schedule: str, length: int, rates: Sequence[float], rng: np.random.Generator
) -> np.ndarray:
    """Per-frame rates of one query tracklet of ``length`` frames."""
    known = np.asarray(sorted(float(rate) for rate in rates))
    if schedule == "constant":
        return np.full(length, known[rng.integers(0, known.size)])
    if schedule == "random":
        return known[rng.integers(0, known.size, size=length)]
    if schedule == "ramp":
        return np.linspace(known[-1], 1.0, length) if length > 1 else np.array([known[-1]])
    raise ValueError(f"schedule: expected one of {list(SCHEDULES)}, got {schedule!r}")


class _Embedder:
    """Frames in, (embeddings, rates, levels) out, with the model's level estimator."""

    def __init__(self, model: Any, preprocess: Any, reference: tuple[float, float], policy: str):
        self.model, self.preprocess = model, preprocess
        self.reference, self.policy = reference, policy
        self.known_rates = [float(rate) for rate in model.rates]
        self.bounds = prefix_bounds(model.distance_split_sizes, len(self.known_rates))

    def __call__(self, crops: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from rareid.tracks.model import embed_images, query_level

        rates, levels = [], []
        for crop in crops:
            rate, level = query_level(
                crop.shape[0],
                self.known_rates,
                self.reference[0],
                self.policy,
                None,
                crop.shape[1],
                self.reference[1],
            )
            rates.append(rate)
            levels.append(level)
        embeddings = embed_images(self.model, self.preprocess, crops, levels).numpy()
        return embeddings, np.asarray(rates), np.asarray(levels)

    def pool(
        self, embeddings: np.ndarray, rates: np.ndarray, levels: np.ndarray, pooling: str
    ) -> PooledTrack:
        return pool_track(embeddings, levels, rates, self.bounds, self.known_rates, pooling)


def _split(values: np.ndarray, lengths: list[int]) -> list[np.ndarray]:
    return np.split(values, np.cumsum(lengths)[:-1])


def _score(
    embedder: _Embedder,
    queries: list[PooledTrack],
    gallery: list[PooledTrack],
    data: VideoSet,
    min_frames: int,
    metric: str,
) -> tuple[float, float]:
    pairs = track_distances(queries, gallery, embedder.bounds, min_frames, metric)
    cmc, mean_ap = evaluate_rank(
        pairs.distances,
        data.query_pids,
        data.gallery_pids,
        data.query_cameras,
        data.gallery_cameras,
    )
    return float(cmc[0]), float(mean_ap)


def evaluate_mlr_video(
    model: Any,
    preprocess: Any,
    data: VideoSet,
    schedules: Sequence[str] = SCHEDULES,
    poolings: Sequence[str] = POOLINGS,
    trials: int = 10,
    seed: int = 0,
    min_frames: int = DEFAULT_MIN_FRAMES,
    level_policy: str = "nearest",
) -> dict[str, dict[str, dict[str, list[float]]]]:
    """``{schedule: {method: {"rank1": [per trial], "mAP": [...]}}}`` where a method is a
    pooling or ``single-frame``. Same seed, same numbers."""
    height, width = data.gallery[0][0].shape[:2]
    embedder = _Embedder(model, preprocess, (float(height), float(width)), level_policy)
    metric = str(getattr(model.hparams, "distance", "euclidean"))
    gallery_lengths = [len(track) for track in data.gallery]
    gallery_frames = [frame for track in data.gallery for frame in track]
    gallery_parts = [_split(part, gallery_lengths) for part in embedder(gallery_frames)]
    gallery_tracks = list(zip(*gallery_parts, strict=True))
    pooled_gallery = {
        pooling: [embedder.pool(e, r, lv, pooling) for e, r, lv in gallery_tracks]
        for pooling in poolings
    }
    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    query_lengths = [len(track) for track in data.queries]
    for schedule in schedules:
        table = results.setdefault(schedule, {})
        for trial in range(trials):
            rng = np.random.default_rng([seed, trial, SCHEDULES.index(schedule)])
            crops = []
            for track in data.queries:
                for frame, rate in zip(
                    track,
                    schedule_rates(schedule, len(track), embedder.known_rates, rng),
                    strict=True,
                ):
                    crops.append(degrade(frame, float(rate)))
            query_parts = list(
                zip(*[_split(part, query_lengths) for part in embedder(crops)], strict=True)
            )
            for pooling in poolings:
                pooled = [embedder.pool(e, r, lv, pooling) for e, r, lv in query_parts]
                rank1, mean_ap = _score(
                    embedder, pooled, pooled_gallery[pooling], data, min_frames, metric
                )
                scores = table.setdefault(pooling, {"rank1": [], "mAP": []})
                scores["rank1"].append(rank1)
                scores["mAP"].append(mean_ap)
            single_q = []
            for e, r, lv in query_parts:
                pick = int(rng.integers(0, len(lv)))
                single_q.append(
                    embedder.pool(
                        e[pick : pick + 1], r[pick : pick + 1], lv[pick : pick + 1], "average"
                    )
                )
            single_g = []
            for e, r, lv in gallery_tracks:
                pick = int(rng.integers(0, len(lv)))
                single_g.append(
                    embedder.pool(
                        e[pick : pick + 1], r[pick : pick + 1], lv[pick : pick + 1], "average"
                    )
                )
            rank1, mean_ap = _score(embedder, single_q, single_g, data, 1, metric)
            scores = table.setdefault(SINGLE_FRAME, {"rank1": [], "mAP": []})
            scores["rank1"].append(rank1)
            scores["mAP"].append(mean_ap)
    return results


def summarize(
    results: dict[str, dict[str, dict[str, list[float]]]],
) -> dict[str, dict[str, dict[str, float]]]:
    """Mean and standard deviation (over trials) of every score, in percent."""
    return {
        schedule: {
            method: {
                f"{name}_{stat}": float(getattr(np, stat)(np.asarray(values) * 100))
                for name, values in scores.items()
                for stat in ("mean", "std")
            }
            for method, scores in table.items()
        }
        for schedule, table in results.items()
    }


def video_set(splits: Any, max_frames: int = 16) -> VideoSet:
    """The query and gallery tracklets of a video dataset's splits, read into memory: at most
    ``max_frames`` frames per tracklet, evenly spaced (long tracklets repeat themselves)."""
    from rareid.tracks.readers import read_rgb
    from rareid.tracks.tracklet import TrackInputError

    def frames(track: Any) -> list[np.ndarray]:
        paths = list(track.paths)
        if len(paths) > max_frames:
            chosen = np.linspace(0, len(paths) - 1, max_frames).round().astype(int)
            paths = [paths[i] for i in chosen.tolist()]
        images = []
        for path in paths:
            image = read_rgb(path)
            if image is None:
                raise TrackInputError(f"frame {path!r} cannot be decoded")
            images.append(image)
        return images

    return VideoSet(
        [frames(track) for track in splits.query],
        [track.pid for track in splits.query],
        [track.camid for track in splits.query],
        [frames(track) for track in splits.gallery],
        [track.pid for track in splits.gallery],
        [track.camid for track in splits.gallery],
    )
