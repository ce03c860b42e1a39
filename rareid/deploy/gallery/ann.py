"""Approximate search for large galleries: one faiss index per level prefix, exact re-scoring.

A level-``k`` query is compared on the first ``p_k`` dimensions of the gallery vectors (Eq. 2).
An approximate index built on the full vectors ranks by the full distance, which is not the
level-``k`` distance, so each level gets its own faiss index, built by ``faiss.index_factory``
on the gallery prefix of length ``p_k``:

* ``ivf-flat``: ``IVF{nlist},Flat`` (inverted lists of the raw prefixes),
* ``hnsw``: ``HNSW32`` (a graph over the raw prefixes),
* ``ivf-pq``: ``IVF{nlist},PQ{M}x{bits}`` (inverted lists of product-quantised codes).

Each one returns a short list of candidates (``shortlist`` per query, at least ``k``) that the
search re-scores with the exact prefix distance on the stored float32 vectors, so the returned
distances are exact and only the recall is approximate. The cost of this choice is memory:
``ivf-flat`` and ``hnsw`` keep a copy of every prefix (for ``m`` equal sub-vectors,
``(m + 1) / 2`` times the gallery), ``ivf-pq`` keeps ``M`` bytes per vector and level. The cosine
distance is served by L2 on unit-normalised prefixes (the same order).

The faiss indexes are saved with ``faiss.serialize_index`` as uint8 arrays inside the ``.npz``
index file (``ann_level1`` ...), so the file still loads with ``allow_pickle=False``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from rareid.deploy.gallery.faiss_import import faiss_available, require_faiss
from rareid.levels import prefix_lengths

__all__ = ["AnnIndex", "faiss_available", "require_faiss"]

AnnKind = Literal["ivf-flat", "hnsw", "ivf-pq"]
#: Default candidates per query that are re-scored exactly.
DEFAULT_SHORTLIST = 100
#: Rows per faiss ``add`` call (bounds the temporary copy of a prefix).
ADD_CHUNK_ROWS = 65536
#: Training rows of the IVF coarse quantiser and the PQ codebooks (faiss's advice: 39+ per list).
TRAIN_ROWS_PER_LIST = 64


def default_lists(rows: int) -> int:
    """Inverted lists of an IVF index: about ``4 sqrt(N)``, and at most one per 39 rows."""
    return max(1, min(int(4 * math.sqrt(rows)), rows // 39))


def pq_shape(length: int, rows: int) -> tuple[int, int]:
    """(sub-quantisers, bits) of a PQ code for a prefix of ``length`` dimensions: sub-vectors of
    about 8 dimensions (a divisor of ``length``), 8-bit codes when there are rows to train them."""
    target = max(1, length // 8)
    subquantizers = max(d for d in range(1, target + 1) if length % d == 0)
    bits = max(1, min(8, int(math.log2(max(2, rows // 39)))))
    return subquantizers, bits


def factory_string(kind: AnnKind, length: int, rows: int) -> str:
    """The ``faiss.index_factory`` description of one level's index."""
    if kind == "hnsw":
        return "HNSW32"
    lists = default_lists(rows)
    if kind == "ivf-flat":
        return f"IVF{lists},Flat"
    subquantizers, bits = pq_shape(length, rows)
    return f"IVF{lists},PQ{subquantizers}x{bits}"


def _prefix_rows(
    vectors: torch.Tensor | np.ndarray, start: int, stop: int, length: int, metric: str
) -> np.ndarray:
    """Rows ``start:stop`` of the first ``length`` dimensions, float32, unit-norm for cosine."""
    rows = vectors[start:stop, :length]
    rows = rows.numpy() if isinstance(rows, torch.Tensor) else np.asarray(rows)
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    if metric == "cosine":
        rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    return rows


@dataclass
class AnnIndex:
    """One faiss index per level prefix, and how to search them."""

    kind: AnnKind
    factories: list[str]
    indexes: list[Any]  # faiss.Index, one per level
    split_sizes: list[int]
    metric: str
    shortlist: int = DEFAULT_SHORTLIST
    nprobe: int = 16
    ef_search: int = 128

    @classmethod
    def build(
        cls,
        vectors: torch.Tensor | np.ndarray,
        split_sizes: Sequence[int],
        metric: str,
        kind: AnnKind,
        shortlist: int = DEFAULT_SHORTLIST,
        nprobe: int | None = None,
        ef_search: int = 128,
        seed: int = 0,
    ) -> AnnIndex:
        """Train and fill one index per level on the prefixes of ``vectors`` (N, d)."""
        faiss = require_faiss()
        rows = int(vectors.shape[0])
        if rows == 0:
            raise ValueError("approximate search: the gallery is empty")
        lengths = prefix_lengths(split_sizes)
        lists = default_lists(rows)
        train_rows = min(rows, max(lists * TRAIN_ROWS_PER_LIST, 256 * 40))
        sample = np.sort(np.random.default_rng(seed).choice(rows, train_rows, replace=False))
        factories, indexes = [], []
        for length in lengths:
            description = factory_string(kind, length, rows)
            index = faiss.index_factory(length, description, faiss.METRIC_L2)
            if not index.is_trained:
                train = vectors[sample, :length] if isinstance(vectors, np.ndarray) else None
                train = (
                    _prefix_rows(vectors[torch.from_numpy(sample)], 0, train_rows, length, metric)
                    if train is None
                    else _prefix_rows(train, 0, train_rows, length, metric)
                )
                try:
                    index.train(train)
                except RuntimeError as error:  # faiss: too few points for its clusters
                    reason = str(error).split("failed: ")[-1].split("\n")[0].strip()
                    raise ValueError(
                        f"--ann {kind}: a gallery of {rows} image(s) is too small to train it "
                        f"({reason}); leave out --ann (exact search suits small galleries) "
                        "or index more images"
                    ) from None
            for start in range(0, rows, ADD_CHUNK_ROWS):
                index.add(_prefix_rows(vectors, start, start + ADD_CHUNK_ROWS, length, metric))
            factories.append(description)
            indexes.append(index)
        probes = nprobe if nprobe is not None else min(lists, max(16, lists // 64))
        built = cls(kind, factories, indexes, [int(s) for s in split_sizes], metric, shortlist)
        built.nprobe, built.ef_search = probes, ef_search
        return built

    # ------------------------------------------------------------------ searching
    def _configure(self, index: Any) -> None:
        faiss = require_faiss()
        if self.kind == "hnsw":
            faiss.downcast_index(index).hnsw.efSearch = max(self.ef_search, self.shortlist)
        else:
            faiss.extract_index_ivf(index).nprobe = self.nprobe

    def candidates(
        self,
        queries: torch.Tensor,
        levels: torch.Tensor,
        count: int,
        gallery: torch.Tensor,
    ) -> torch.Tensor:
        """(Q, max(count, shortlist)) distinct gallery positions per query, to be re-scored.

        A query for which the approximate index returns fewer candidates than that (too few
        probed lists) gets its short list from an exact scan of its level's prefix instead.
        """
        rows = int(gallery.shape[0])
        width = min(rows, max(count, self.shortlist))
        out = torch.empty(queries.shape[0], width, dtype=torch.long)
        lengths = prefix_lengths(self.split_sizes)
        for level in torch.unique(levels).tolist():
            members = (levels == level).nonzero(as_tuple=True)[0]
            length = lengths[level - 1]
            prefix = _prefix_rows(queries[members], 0, members.numel(), length, self.metric)
            index = self.indexes[level - 1]
            self._configure(index)
            _, found = index.search(prefix, width)
            for row in np.nonzero((found < 0).any(1))[0].tolist():
                found[row] = _exact_prefix_top(gallery, prefix[row], length, width, self.metric)
            out[members] = torch.from_numpy(found.astype(np.int64))
        return out

    # ------------------------------------------------------------------ files
    def describe(self) -> dict[str, Any]:
        """The JSON part saved in the index file's metadata."""
        return {
            "kind": self.kind,
            "factories": self.factories,
            "split_sizes": self.split_sizes,
            "metric": self.metric,
            "shortlist": self.shortlist,
            "nprobe": self.nprobe,
            "ef_search": self.ef_search,
        }

    def to_arrays(self) -> dict[str, np.ndarray]:
        """``faiss.serialize_index`` of each level as uint8 arrays (no pickle)."""
        faiss = require_faiss()
        return {
            f"ann_level{level}": np.asarray(faiss.serialize_index(index), dtype=np.uint8)
            for level, index in enumerate(self.indexes, start=1)
        }

    @classmethod
    def from_arrays(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> AnnIndex:
        faiss = require_faiss()
        levels = len(meta["split_sizes"])
        missing = [f"ann_level{k}" for k in range(1, levels + 1) if f"ann_level{k}" not in arrays]
        if missing:
            raise ValueError(f"the approximate index lacks {', '.join(missing)}: rebuild it")
        indexes = [
            faiss.deserialize_index(np.ascontiguousarray(arrays[f"ann_level{k}"], dtype=np.uint8))
            for k in range(1, levels + 1)
        ]
        return cls(
            kind=meta["kind"],
            factories=list(meta["factories"]),
            indexes=indexes,
            split_sizes=[int(s) for s in meta["split_sizes"]],
            metric=meta["metric"],
            shortlist=int(meta["shortlist"]),
            nprobe=int(meta["nprobe"]),
            ef_search=int(meta["ef_search"]),
        )


def _exact_prefix_top(
    gallery: torch.Tensor, prefix: np.ndarray, length: int, count: int, metric: str
) -> np.ndarray:
    """The ``count`` nearest gallery rows of one query prefix, by an exact scan."""
    best_distance = np.empty(0, dtype=np.float32)
    best_position = np.empty(0, dtype=np.int64)
    for start in range(0, gallery.shape[0], ADD_CHUNK_ROWS):
        block = _prefix_rows(gallery, start, start + ADD_CHUNK_ROWS, length, metric)
        distance = ((block - prefix[None, :]) ** 2).sum(1)
        best_distance = np.concatenate([best_distance, distance])
        best_position = np.concatenate([best_position, np.arange(start, start + len(block))])
        keep = np.argsort(best_distance, kind="stable")[:count]
        best_distance, best_position = best_distance[keep], best_position[keep]
    return best_position


def ann_candidates(
    index: Any, queries: torch.Tensor, levels: torch.Tensor, count: int
) -> torch.Tensor | None:
    """The short lists of ``index``'s approximate index, or ``None`` when it has none."""
    ann = getattr(index, "ann", None)
    if ann is None:
        return None
    return ann.candidates(queries, levels, count, index.embeddings)
