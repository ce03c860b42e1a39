"""How far an exported runtime (int8, OpenVINO) drifts from the float32 model, per level: the
largest embedding difference, how many of the float32 top-10 it keeps, and rank-1 / mAP on a
held-out labelled set (each image a query at every level, degraded to that level's rate, against
the HR gallery of all of them; same-camera matches of the same person are left out, as
Market-1501 does). Short prefixes carry the least information, so a few quantisation errors
weigh most there: the table says which levels drift most.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rareid.data.lowres import degrade
from rareid.data.pixels import read_image
from rareid.deploy.model.arrays import ArrayPreprocess
from rareid.levels import level_to_rate, prefix_lengths

if TYPE_CHECKING:
    from rareid.deploy.model.backends import EmbeddingBackend

#: How many of the float32 model's first matches the agreement counts.
TOP = 10


@dataclass
class HeldOut:
    """Labelled crops: decoded images, person ids and cameras (unreadable files counted)."""

    images: list[np.ndarray]
    pids: np.ndarray
    camids: np.ndarray
    unreadable: int = 0


def read_heldout(labels: str | Path) -> HeldOut:
    """A labels CSV (``path,person,camera``; paths relative to its folder, the format of
    ``rareid calibrate --labels``) and its images; a bad file is a ValueError naming it."""
    labels = Path(labels)
    if not labels.is_file():
        raise ValueError(f"--heldout: {str(labels)!r} does not exist; give a labels CSV")
    with labels.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {"path", "person", "camera"} <= set(rows[0]):
        raise ValueError(f"--heldout: {str(labels)!r} needs the columns path,person,camera")
    images, pids, camids, unreadable = [], [], [], 0
    for row in rows:
        try:
            images.append(read_image(labels.parent / row["path"]))
        except OSError:
            unreadable += 1
            continue
        pids.append(row["person"])
        camids.append(row["camera"])
    if len(set(pids)) < 2:
        raise ValueError(f"--heldout: {str(labels)!r} has fewer than 2 readable people")
    _, pid_codes = np.unique(pids, return_inverse=True)
    _, cam_codes = np.unique(camids, return_inverse=True)
    return HeldOut(images, pid_codes, cam_codes, unreadable)


@dataclass
class LevelDrift:
    """One level's row of the drift table (rank-1 and mAP in percent)."""

    level: int
    rate: float
    max_difference: float
    top_agreement: float
    rank1_reference: float
    map_reference: float
    rank1: float
    map: float

    @property
    def drop(self) -> float:
        """The larger of the rank-1 and mAP losses, in points."""
        return max(self.rank1_reference - self.rank1, self.map_reference - self.map)


def _embed(
    runtime: EmbeddingBackend,
    preprocess: ArrayPreprocess,
    images: list[np.ndarray],
    level: int,
    batch: int = 32,
) -> np.ndarray:
    parts = [
        runtime.embed_arrays(
            preprocess.arrays(images[start : start + batch]),
            np.full(len(images[start : start + batch]), level, dtype=np.int64),
        )
        for start in range(0, len(images), batch)
    ]
    return np.concatenate(parts).astype(np.float64)


def _distances(queries: np.ndarray, gallery: np.ndarray, length: int, metric: str) -> np.ndarray:
    query, rows = queries[:, :length], gallery[:, :length]
    if metric == "cosine":
        query = query / np.maximum(np.linalg.norm(query, axis=1, keepdims=True), 1e-12)
        rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
        return 1 - query @ rows.T
    return (query**2).sum(1)[:, None] - 2 * query @ rows.T + (rows**2).sum(1)[None, :]


def level_views(heldout: HeldOut, rate: float) -> list[np.ndarray]:
    """Every held-out image at ``rate`` (``degrade``: the training-time downsampling)."""
    return [degrade(image, rate) for image in heldout.images]


def measure_drift(
    reference: EmbeddingBackend,
    candidate: EmbeddingBackend,
    preprocess: ArrayPreprocess,
    rates: list[float],
    split_sizes: list[int],
    heldout: HeldOut,
    metric: str = "euclidean",
) -> list[LevelDrift]:
    """The drift of ``candidate`` from ``reference`` at every level (see the module); the
    largest difference is over the level's query embeddings (the HR gallery's is level m's)."""
    from rareid.evaluation.rank import evaluate_rank

    levels = len(rates)
    lengths = prefix_lengths(split_sizes)
    gallery = {
        name: _embed(runtime, preprocess, heldout.images, levels)
        for name, runtime in (("reference", reference), ("candidate", candidate))
    }
    rows = []
    for level in range(1, levels + 1):
        rate = level_to_rate(level, rates)
        views = level_views(heldout, rate)
        scores, tops, embedded = {}, {}, {}
        for name, runtime in (("reference", reference), ("candidate", candidate)):
            queries = embedded[name] = _embed(runtime, preprocess, views, level)
            distances = _distances(queries, gallery[name], lengths[level - 1], metric)
            cmc, mean_ap = evaluate_rank(
                distances, heldout.pids, heldout.pids, heldout.camids, heldout.camids
            )
            scores[name] = (100 * float(cmc[0]), 100 * float(mean_ap))
            tops[name] = np.argsort(distances, axis=1, kind="stable")[:, :TOP]
        difference = float(np.abs(embedded["candidate"] - embedded["reference"]).max())
        agreement = np.mean(
            [
                len(set(mine.tolist()) & set(theirs.tolist())) / mine.size
                for mine, theirs in zip(tops["candidate"], tops["reference"], strict=True)
            ]
        )
        rows.append(
            LevelDrift(
                level,
                rate,
                difference,
                100 * float(agreement),
                *scores["reference"],
                *scores["candidate"],
            )
        )
    return rows


def drift_table(rows: list[LevelDrift], name: str) -> list[str]:
    """The drift rows as a Markdown table, the level that drifts most named below it."""
    lines = [
        f"| level (rate) | max abs diff | top-{TOP} agreement | rank-1 fp32 -> {name} | "
        f"mAP fp32 -> {name} |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.level} (r={row.rate:g}) | {row.max_difference:.2e} | "
            f"{row.top_agreement:.1f} % | {row.rank1_reference:.1f} -> {row.rank1:.1f} | "
            f"{row.map_reference:.1f} -> {row.map:.1f} |"
        )
    worst = max(rows, key=lambda row: (row.drop, -row.top_agreement))
    lines.append(
        f"most drift at level {worst.level} (r={worst.rate:g}): {worst.drop:+.1f} points lost, "
        f"top-{TOP} agreement {worst.top_agreement:.1f} %"
    )
    return lines


def ranking_table(
    runtime: EmbeddingBackend,
    preprocess: ArrayPreprocess,
    rates: list[float],
    split_sizes: list[int],
    heldout: HeldOut,
    metric: str = "euclidean",
) -> list[str]:
    """Rank-1 and mAP of one runtime per level on ``heldout`` (the model card's table)."""
    rows = measure_drift(runtime, runtime, preprocess, rates, split_sizes, heldout, metric)
    lines = ["| level (rate) | rank-1 | mAP |", "|---|---|---|"]
    lines += [f"| {r.level} (r={r.rate:g}) | {r.rank1:.1f} | {r.map:.1f} |" for r in rows]
    return lines
