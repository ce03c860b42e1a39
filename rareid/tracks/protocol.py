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


#: CMC ranks kept per trial besides mAP.
CMC_RANKS = (1, 5, 10)


def _record(
    table: dict[str, dict[str, list[float]]], method: str, scores: dict[str, float]
) -> None:
    entry = table.setdefault(method, {name: [] for name in scores})
    for name, value in scores.items():
        entry[name].append(value)


def _single_frames(
    embedder: _Embedder, tracks: Sequence[tuple[np.ndarray, ...]], rng: np.random.Generator
) -> list[PooledTrack]:
    """One random frame of each tracklet, as a tracklet of one frame (the crop path)."""
    chosen = []
    for embeddings, rates, levels in tracks:
        pick = slice(position := int(rng.integers(0, len(levels))), position + 1)
        chosen.append(embedder.pool(embeddings[pick], rates[pick], levels[pick], "average"))
    return chosen


def _score(
    embedder: _Embedder,
    queries: list[PooledTrack],
    gallery: list[PooledTrack],
    data: VideoSet,
    min_frames: int,
    metric: str,
) -> dict[str, float]:
    pairs = track_distances(queries, gallery, embedder.bounds, min_frames, metric)
    cmc, mean_ap = evaluate_rank(
        pairs.distances,
        data.query_pids,
        data.gallery_pids,
        data.query_cameras,
        data.gallery_cameras,
    )
    scores = {f"rank{rank}": float(cmc[rank - 1]) for rank in CMC_RANKS}
    return {**scores, "mAP": float(mean_ap)}


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
    """``{schedule: {method: {"rank1": [per trial], "rank5", "rank10", "mAP"}}}`` (CMC at
    :data:`CMC_RANKS` and mAP, each a list over trials) where a method is a
    pooling or ``single-frame``. Same seed, same numbers."""
    height, width = data.gallery[0][0].shape[:2]
    embedder = _Embedder(model, preprocess, (float(height), float(width)), level_policy)
    metric = str(getattr(model.hparams, "distance", "euclidean"))
    gallery_lengths = [len(track) for track in data.gallery]
    gallery_frames = [frame for track in data.gallery for frame in track]
    gallery_parts = [_split(part, gallery_lengths) for part in embedder(gallery_frames)]
    gallery_tracks = list(zip(*gallery_parts, strict=True))
    pooled_gallery = {
        pooling: [embedder.pool(*track, pooling) for track in gallery_tracks]
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
                pooled = [embedder.pool(*part, pooling) for part in query_parts]
                scores = _score(embedder, pooled, pooled_gallery[pooling], data, min_frames, metric)
                _record(table, pooling, scores)
            single_q = _single_frames(embedder, query_parts, rng)
            single_g = _single_frames(embedder, gallery_tracks, rng)
            _record(table, SINGLE_FRAME, _score(embedder, single_q, single_g, data, 1, metric))
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
            paths = [paths[position] for position in chosen.tolist()]
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


def synthetic_video_set(identities: int = 100, seed: int = 0, length: int = 12) -> VideoSet:
    """The test identities of the ``rareid synth --identities N --seed S`` world (those after
    its training half) as HR tracklets of ``length`` renders: camera 0 gives the queries,
    cameras 1 and 2 the gallery. Nothing is read from disk."""
    from rareid.data.synthetic import SyntheticWorld
    from rareid.data.synthetic.video import hr_tracklet

    train = identities // 2
    world = SyntheticWorld(identities=identities, seed=seed, cameras=4, train_identities=train)
    pids = list(range(train + 1, identities + 1))
    queries = [hr_tracklet(world, pid, 0, length, 1000) for pid in pids]
    gallery = [hr_tracklet(world, pid, camera, length, 2000) for camera in (1, 2) for pid in pids]
    cameras = [1] * len(pids) + [2] * len(pids)
    return VideoSet(queries, pids, [0] * len(pids), gallery, pids * 2, cameras)


def markdown_table(
    summary: dict[str, dict[str, dict[str, float]]], methods: Sequence[str]
) -> list[str]:
    """Lines of a Markdown table: one row per method, rank-1 and mAP (mean ± std) per column."""
    columns = list(summary)
    lines = [
        "| method | " + " | ".join(f"{name} rank-1 | {name} mAP" for name in columns) + " |",
        "|---|" + "---:|" * (2 * len(columns)),
    ]
    for method in methods:
        cells = []
        for column in columns:
            scores = summary[column][method]
            cells.append(
                f"{scores['rank1_mean']:.1f} ± {scores['rank1_std']:.1f} | "
                f"{scores['mAP_mean']:.1f} ± {scores['mAP_std']:.1f}"
            )
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines
