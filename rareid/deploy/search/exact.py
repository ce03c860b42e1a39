"""Rank a gallery index for real query crops: the level of each query from its height, the
prefix distance of Eq. 2, exact top-k through faiss or torch, verdicts, CSV / JSON / rank sheet.

Exact search on one stored copy of the gallery for every level: for the squared Euclidean
distance on the first ``p_k`` dimensions,

    ||q_k - g_k||^2 = ||q_k||^2 - 2 (q_k . g_k - ||g_k||^2 / 2),

so a level-``k`` query is the inner product of ``[q_k, 0, e_k]`` (its prefix, zeros, a one-hot
of its level) with the gallery row ``[g, -||g_1||^2/2, ..., -||g_m||^2/2]``. One flat
inner-product index of width ``d + m`` serves all levels (faiss path); the torch path computes
the prefix distances directly, in gallery chunks. Both re-score their candidates with the same
exact formula and order ties by gallery position, so they return the same list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch

from rareid.deploy.gallery.ann import ann_candidates, faiss_available
from rareid.deploy.model.backends import EmbeddingBackend, as_backend, embed_in_batches
from rareid.deploy.model.inputs import finite_queries, integer_levels
from rareid.deploy.search.prefix import CHUNK_ROWS, FAISS_MARGIN, FaissPrefixIndex, order
from rareid.deploy.search.prefix import prefix_sq_norms as array_sq_norms
from rareid.deploy.search.prefix import rescore as rescore_arrays
from rareid.levels import prefix_lengths

if TYPE_CHECKING:
    from rareid.deploy.gallery.index import GalleryIndex
    from rareid.deploy.model.inference import ImageInput
    from rareid.models.module import RAReIDModule

#: Ranking engines: exact search through faiss or torch; ``auto`` picks (see Searcher.search).
Engine = Literal["auto", "torch", "faiss"]

#: Gallery rows per chunk of the torch path (bounds the (Q, chunk) distance block).
TORCH_CHUNK_ROWS = CHUNK_ROWS
__all__ = ["Engine", "FaissPrefixIndex", "SearchResult", "Searcher"]


@dataclass
class SearchResult:
    """Top-k gallery positions and prefix distances per query (ascending distance)."""

    indices: torch.Tensor  # (Q, k) int64 gallery positions
    distances: torch.Tensor  # (Q, k) float32
    levels: torch.Tensor  # (Q,) the level each query was compared at


# ---------------------------------------------------------------------- distances
def prefix_sq_norms(
    vectors: torch.Tensor, split_sizes: Sequence[int], chunk_rows: int = TORCH_CHUNK_ROWS
) -> torch.Tensor:
    """(N, m) squared norms of every level prefix, as a tensor (:func:`prefix.prefix_sq_norms
    <rareid.deploy.search.prefix.prefix_sq_norms>`)."""
    return torch.from_numpy(array_sq_norms(vectors.detach().cpu().float().numpy(), split_sizes))


def rescore(
    queries: torch.Tensor,
    levels: torch.Tensor,
    gallery: torch.Tensor,
    candidates: torch.Tensor,
    split_sizes: Sequence[int],
    metric: str,
) -> torch.Tensor:
    """Exact prefix distances (Q, c) of each query to its candidate gallery rows, as a tensor
    (:func:`prefix.rescore <rareid.deploy.search.prefix.rescore>`)."""
    return torch.from_numpy(
        rescore_arrays(
            queries.detach().cpu().float().numpy(),
            levels.numpy(),
            gallery.detach().cpu().float().numpy(),
            candidates.numpy(),
            split_sizes,
            metric,
        )
    )


def torch_candidates(
    gallery: torch.Tensor,
    gallery_sq: torch.Tensor,
    queries: torch.Tensor,
    levels: torch.Tensor,
    split_sizes: Sequence[int],
    metric: str,
    count: int,
    chunk_rows: int = TORCH_CHUNK_ROWS,
) -> torch.Tensor:
    """(Q, count) nearest gallery positions by prefix distance, gallery scanned in chunks."""
    bounds = prefix_lengths(split_sizes)
    out = torch.empty(queries.shape[0], count, dtype=torch.long)
    for level in torch.unique(levels).tolist():
        rows = (levels == level).nonzero(as_tuple=True)[0]
        length = bounds[level - 1]
        prefix = queries[rows, :length]
        prefix_sq = (prefix * prefix).sum(1)
        best_dist = torch.empty(rows.numel(), 0)
        best_index = torch.empty(rows.numel(), 0, dtype=torch.long)
        for start in range(0, gallery.shape[0], chunk_rows):
            block = gallery[start : start + chunk_rows, :length]
            block_sq = gallery_sq[start : start + chunk_rows, level - 1]
            if metric == "cosine":
                norms = (prefix_sq.sqrt()[:, None] * block_sq.sqrt()[None, :]).clamp_min(1e-12)
                dist = 1 - (prefix @ block.T) / norms
            else:
                dist = torch.addmm(block_sq[None, :], prefix, block.T, alpha=-2.0)
                dist.add_(prefix_sq[:, None])
            take = min(count, dist.shape[1])
            values, positions = torch.topk(dist, take, dim=1, largest=False)
            best_dist = torch.cat([best_dist, values], 1)
            best_index = torch.cat([best_index, positions + start], 1)
            if best_dist.shape[1] > count:
                values, keep = torch.topk(best_dist, count, dim=1, largest=False)
                best_dist, best_index = values, best_index.gather(1, keep)
        out[rows] = best_index
    return out


class Searcher:
    """Exact top-``k`` search of one gallery index. It owns what it builds from the index (the
    faiss index, the prefix norms of the gallery) and rebuilds them when the index changes size,
    so that the index itself stays a plain record of its file.

    Examples::

        searcher = Searcher(GalleryIndex.load("gallery.npz"))
        found = searcher.search_images(model, ["q1.jpg", "q2.jpg"], levels=[1, 4], k=10)
        found.indices, found.distances  # (2, 10) gallery positions, prefix distances
    """

    def __init__(self, index: GalleryIndex) -> None:
        self.index = index
        self._faiss: tuple[int, FaissPrefixIndex] | None = None
        self._gallery_sq: torch.Tensor | None = None

    def faiss_index(self) -> FaissPrefixIndex:
        """The faiss index of the gallery's embeddings, built on first use."""
        if self._faiss is None or self._faiss[0] != len(self.index):
            self._faiss = (
                len(self.index),
                FaissPrefixIndex(self.index.embeddings.numpy(), self.index.split_sizes),
            )
        return self._faiss[1]

    def gallery_sq(self) -> torch.Tensor:
        """(N, m) squared norms of the gallery's level prefixes, computed on first use."""
        if self._gallery_sq is None or self._gallery_sq.shape[0] != len(self.index):
            self._gallery_sq = prefix_sq_norms(self.index.embeddings, self.index.split_sizes)
        return self._gallery_sq

    def search(
        self,
        queries: torch.Tensor,
        levels: torch.Tensor | Sequence[int],
        k: int = 10,
        engine: Engine = "auto",
    ) -> SearchResult:
        """Exact top-``k`` of zero-padded queries at their levels against the HR gallery.

        ``engine``: ``faiss`` (needs faiss-cpu and the Euclidean distance), ``torch``, or
        ``auto`` (the index's approximate index when it has one, else faiss when it is installed
        and applies, torch otherwise). Same results either way.
        """
        index = self.index
        levels = integer_levels(levels)
        queries = torch.as_tensor(queries).detach().float().cpu()
        _check_queries(index, queries, levels, k)
        k = min(k, len(index))
        if len(index) == 0 or queries.shape[0] == 0:
            empty = torch.empty(queries.shape[0], 0)
            return SearchResult(empty.long(), empty, levels)
        use_faiss = engine == "faiss" or (
            engine == "auto" and index.metric == "euclidean" and faiss_available()
        )
        if use_faiss and index.metric != "euclidean":
            raise ValueError(
                "the faiss backend ranks the euclidean distance only; use --backend torch"
            )
        count = min(len(index), k + FAISS_MARGIN)
        found = ann_candidates(index, queries, levels, count) if engine == "auto" else None
        if found is not None:
            pass  # the approximate index's short list, re-scored exactly below
        elif use_faiss:
            found = torch.from_numpy(
                self.faiss_index().candidates(queries.numpy(), levels.tolist(), count)
            )
        else:
            found = torch_candidates(
                index.embeddings,
                self.gallery_sq(),
                queries,
                levels,
                index.split_sizes,
                index.metric,
                count,
            )
        distances = rescore(
            queries, levels, index.embeddings, found, index.split_sizes, index.metric
        )
        indices, distances = order(found.numpy(), distances.numpy(), k)
        return SearchResult(torch.from_numpy(indices), torch.from_numpy(distances), levels)

    def search_images(
        self,
        model: RAReIDModule | EmbeddingBackend,
        images: Sequence[ImageInput],
        levels: Sequence[int] | torch.Tensor,
        k: int = 10,
        engine: Engine = "auto",
        batch_size: int = 64,
    ) -> SearchResult:
        """Embed ``images`` at ``levels`` with ``model`` (the index's, or a backend running it),
        ``batch_size`` at a time, and search."""
        runtime = as_backend(model)
        self.index.check_model(runtime)
        levels = integer_levels(levels)
        embeddings = embed_in_batches(runtime, images, self.index.preprocess, levels, batch_size)
        return self.search(embeddings, levels, k, engine)


def _check_queries(
    index: GalleryIndex, queries: torch.Tensor, levels: torch.Tensor, k: int
) -> None:
    """ValueError when the queries, their levels or ``k`` do not fit ``index``."""
    num_levels = index.num_levels
    if queries.ndim != 2 or queries.shape[1] != index.embeddings.shape[1]:
        raise ValueError(
            f"queries: expected (Q, {index.embeddings.shape[1]}) embeddings, got "
            f"{tuple(queries.shape)}"
        )
    if levels.numel() != queries.shape[0]:
        raise ValueError(f"levels: expected {queries.shape[0]} levels, got {levels.numel()}")
    finite_queries(queries)
    if levels.numel() and (int(levels.min()) < 1 or int(levels.max()) > num_levels):
        raise ValueError(f"levels: expected values in 1..{num_levels}, got {levels.tolist()}")
    if k < 1:
        raise ValueError(f"k: expected a positive number of matches, got {k}")
