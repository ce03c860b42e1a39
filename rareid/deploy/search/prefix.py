"""Exact prefix search in NumPy and faiss, no torch: the one flat faiss index that ranks every
level (see :mod:`rareid.deploy.search.exact` for the formula), the exact re-scoring of the
candidates and their order. :class:`~rareid.deploy.search.exact.Searcher` ranks tensors with the
same pieces; :func:`search_record` ranks an :class:`~rareid.deploy.gallery.record.IndexRecord`
for a torch-free runtime.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rareid.deploy.gallery.faiss_import import require_faiss
from rareid.levels import prefix_lengths

if TYPE_CHECKING:
    from rareid.deploy.gallery.record import IndexRecord

#: Gallery rows per chunk (bounds the temporaries of a large gallery).
CHUNK_ROWS = 65536
#: Extra candidates the faiss path fetches, re-scored exactly, so float ties at the k-th place
#: resolve the same way as in the torch path.
FAISS_MARGIN = 8


@dataclass
class ArraySearch:
    """Top-k gallery positions and prefix distances per query (ascending distance)."""

    indices: np.ndarray  # (Q, k) int64 gallery positions
    distances: np.ndarray  # (Q, k) float32
    levels: np.ndarray  # (Q,) the level each query was compared at


def prefix_sq_norms(
    vectors: np.ndarray, split_sizes: Sequence[int], chunk_rows: int = CHUNK_ROWS
) -> np.ndarray:
    """(N, m) squared norms of every level prefix (in row chunks: no (N, d) temporary)."""
    bounds = np.cumsum([0, *[int(s) for s in split_sizes]])
    out = np.empty((vectors.shape[0], len(bounds) - 1), dtype=np.float32)
    for start in range(0, vectors.shape[0], chunk_rows):
        rows = np.asarray(vectors[start : start + chunk_rows], dtype=np.float32)
        blocks = np.add.reduceat(rows * rows, bounds[:-1], axis=1) if rows.size else rows[:, :0]
        out[start : start + chunk_rows] = np.cumsum(blocks, axis=1)
    return out


def rescore(
    queries: np.ndarray,
    levels: np.ndarray,
    gallery: np.ndarray,
    candidates: np.ndarray,
    split_sizes: Sequence[int],
    metric: str,
) -> np.ndarray:
    """Exact prefix distances (Q, c) of each query to its candidate gallery rows."""
    lengths = np.asarray(prefix_lengths(split_sizes))[np.asarray(levels) - 1]  # (Q,)
    keep = np.arange(queries.shape[1])[None, :] < lengths[:, None]  # (Q, d)
    query_prefix = queries * keep
    gallery_prefix = gallery[candidates] * keep[:, None, :]  # (Q, c, d)
    if metric == "cosine":
        query_norm = np.maximum(np.linalg.norm(query_prefix, axis=1, keepdims=True), 1e-12)
        gallery_norm = np.maximum(np.linalg.norm(gallery_prefix, axis=2, keepdims=True), 1e-12)
        cosine = np.einsum("qd,qcd->qc", query_prefix / query_norm, gallery_prefix / gallery_norm)
        return np.maximum(1 - cosine, 0).astype(np.float32)
    return ((gallery_prefix - query_prefix[:, None, :]) ** 2).sum(2).astype(np.float32)


def order(indices: np.ndarray, distances: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Sort each row by (distance, gallery position) and keep ``k``."""
    ranked = np.lexsort((indices, distances), axis=-1)[:, :k]
    return np.take_along_axis(indices, ranked, 1), np.take_along_axis(distances, ranked, 1)


class FaissPrefixIndex:
    """One flat inner-product faiss index of width ``d + m`` that ranks every level exactly."""

    def __init__(self, gallery: np.ndarray, split_sizes: Sequence[int]) -> None:
        faiss = require_faiss("the faiss backend", " (or use --backend torch)")
        self.split_sizes = [int(s) for s in split_sizes]
        self.dim = int(gallery.shape[1])
        self.num_levels = len(self.split_sizes)
        self.index = faiss.IndexFlatIP(self.dim + self.num_levels)
        for start in range(0, gallery.shape[0], CHUNK_ROWS):  # no full-size temporary
            chunk = np.asarray(gallery[start : start + CHUNK_ROWS], dtype=np.float32)
            rows = np.empty((chunk.shape[0], self.dim + self.num_levels), dtype=np.float32)
            rows[:, : self.dim] = chunk
            rows[:, self.dim :] = prefix_sq_norms(chunk, self.split_sizes) * -0.5
            self.index.add(rows)

    def candidates(self, queries: np.ndarray, levels: Sequence[int], count: int) -> np.ndarray:
        bounds = prefix_lengths(self.split_sizes)
        rows = np.zeros((queries.shape[0], self.dim + self.num_levels), dtype=np.float32)
        for position, level in enumerate(int(value) for value in levels):
            rows[position, : bounds[level - 1]] = queries[position, : bounds[level - 1]]
            rows[position, self.dim + level - 1] = 1.0
        _, found = self.index.search(rows, count)
        return found.astype(np.int64)


def search_record(
    record: IndexRecord, queries: np.ndarray, levels: np.ndarray, k: int = 10
) -> ArraySearch:
    """Exact top-``k`` of zero-padded queries at their levels against a record's gallery
    (Euclidean prefix distance, through faiss)."""
    if record.metric != "euclidean":
        raise ValueError("the faiss backend ranks the euclidean distance only; use --backend torch")
    queries = np.asarray(queries, dtype=np.float32)
    levels = np.asarray(levels, dtype=np.int64).reshape(-1)
    if not np.isfinite(queries).all():
        raise ValueError("queries: an embedding holds NaN or infinity")
    k = min(k, len(record))
    count = min(len(record), k + FAISS_MARGIN)
    found = FaissPrefixIndex(record.embeddings, record.split_sizes).candidates(
        queries, levels, count
    )
    distances = rescore(queries, levels, record.embeddings, found, record.split_sizes, "euclidean")
    indices, distances = order(found, distances, k)
    return ArraySearch(indices, distances, levels)
