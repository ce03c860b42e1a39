"""k-reciprocal re-ranking (Zhong et al., CVPR 2017) of embeddings, level-aware and memory-bounded.

A pure function of tensors, used by the MLR metric (``rerank=True``) and, over a gallery index,
by :func:`rareid.deploy.search.rerank.rerank_search`; it imports nothing above ``evaluation``.

Level-aware: every distance it starts from is the prefix distance of Eq. 2, over the first
``min(k_a, k_b)`` sub-vectors of the two images (query-query pairs included; the matrices come
from :func:`rareid.evaluation.distances.level_distances`), so a blurry query is never compared
on dimensions it does not have.

Memory-bounded: the published algorithm fills a dense ``(Q+G)^2`` distance matrix. Only each
image's ``k1 + 1`` nearest neighbours, its largest distance (the row normaliser) and the
distances to its expansion set are needed, so rows are processed in chunks of ``chunk_rows``
against all images, the k-reciprocal sets are sparse (a few ``k1`` entries per row), and the
Jaccard distance is an inverted-index join of those sparse rows. The only dense output is the
``(Q, G)`` matrix the caller asks for.

Steps (notation of the paper): ``N(i, k)``, the ``k + 1`` nearest images of ``i`` (itself
first); ``R(i, k)``, those ``j`` of ``N(i, k)`` with ``i`` in ``N(j, k)``; ``R*(i, k1)``, ``R(i,
k1)`` plus every ``R(c, round(k1/2))`` of its members ``c`` that shares more than two thirds of
its elements with it; ``V[i, j] = exp(-d(i, j) / max_l d(i, l))`` on ``R*``, rows summing to 1;
local query expansion: ``V[i]`` averaged over ``N(i, k2 - 1)``; Jaccard distance ``1 - s / (2 -
s)`` with ``s = sum_l min(V[q, l], V[g, l])``; result ``(1 - lambda) d_J + lambda d / max``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rareid.evaluation.distances import Distance, level_distances
from rareid.levels import prefix_lengths


def paired_distances(
    first: torch.Tensor,
    first_levels: torch.Tensor,
    second: torch.Tensor,
    second_levels: torch.Tensor,
    split_sizes: Sequence[int],
    metric: Distance = "euclidean",
) -> torch.Tensor:
    """(P,) distances of row ``p`` of ``first`` to row ``p`` of ``second`` (prefix of the lower level)."""
    bounds = torch.tensor(prefix_lengths(split_sizes))
    length = bounds[torch.minimum(first_levels, second_levels) - 1]
    keep = (torch.arange(first.shape[1])[None, :] < length[:, None]).to(first.dtype)
    first_prefix, second_prefix = first * keep, second * keep
    if metric == "cosine":
        norms = (first_prefix.norm(dim=1) * second_prefix.norm(dim=1)).clamp_min(1e-12)
        return (1 - (first_prefix * second_prefix).sum(1) / norms).clamp_min(0)
    return ((first_prefix - second_prefix) ** 2).sum(1)


def neighbourhoods(
    vectors: torch.Tensor,
    levels: torch.Tensor,
    split_sizes: Sequence[int],
    count: int,
    metric: Distance = "euclidean",
    chunk_rows: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``count`` nearest images of every image (itself included) and its largest distance.

    Rows are computed ``chunk_rows`` at a time: memory ``chunk_rows x N``, never ``N x N``.
    Ties are broken by position, so the lists do not depend on the chunking.
    """
    total = vectors.shape[0]
    count = min(count, total)
    nearest = torch.empty(total, count, dtype=torch.long)
    largest = torch.empty(total, dtype=vectors.dtype)
    for start in range(0, total, chunk_rows):
        rows = slice(start, start + chunk_rows)
        dist = level_distances(vectors[rows], levels[rows], vectors, levels, split_sizes, metric)
        positions = torch.arange(start, min(start + chunk_rows, total))
        dist[torch.arange(positions.numel()), positions] = -1.0  # itself first, always
        order = torch.argsort(dist, dim=1, stable=True)[:, :count]
        nearest[rows] = order
        largest[rows] = dist.max(1).values
    return nearest, largest


def _reciprocal_mask(nearest: torch.Tensor, k: int, chunk_rows: int = 4096) -> torch.Tensor:
    """(N, k+1) mask of ``N(i, k)`` entries ``j`` whose own ``N(j, k)`` holds ``i``."""
    forward = nearest[:, : k + 1]
    mask = torch.empty(forward.shape, dtype=torch.bool)
    for start in range(0, forward.shape[0], chunk_rows):
        rows = forward[start : start + chunk_rows]
        backward = forward[rows]  # (c, k+1, k+1)
        own = torch.arange(start, start + rows.shape[0])[:, None, None]
        mask[start : start + chunk_rows] = (backward == own).any(2)
    return mask


def reciprocal_weights(
    vectors: torch.Tensor,
    levels: torch.Tensor,
    split_sizes: Sequence[int],
    nearest: torch.Tensor,
    largest: torch.Tensor,
    k1: int,
    metric: Distance = "euclidean",
) -> torch.Tensor:
    """Sparse (N, N) ``V``: Gaussian weights on each image's expanded k-reciprocal set."""
    total = vectors.shape[0]
    half = round(k1 / 2)
    full_mask = _reciprocal_mask(nearest, k1)
    half_mask = _reciprocal_mask(nearest, half)
    half_sets = [nearest[other, : half + 1][half_mask[other]] for other in range(total)]
    row_index, col_index = [], []
    for image in range(total):
        own = nearest[image, : k1 + 1][full_mask[image]]
        members = [own]
        own_set = set(own.tolist())
        for candidate in own.tolist():
            candidate_set = half_sets[candidate]
            shared = sum(1 for value in candidate_set.tolist() if value in own_set)
            if shared > 2 / 3 * candidate_set.numel():
                members.append(candidate_set)
        expansion = torch.unique(torch.cat(members))
        row_index.append(torch.full_like(expansion, image))
        col_index.append(expansion)
    rows, cols = torch.cat(row_index), torch.cat(col_index)
    dist = paired_distances(
        vectors[rows], levels[rows], vectors[cols], levels[cols], split_sizes, metric
    )
    weights = torch.exp(-dist / largest[rows].clamp_min(1e-12))
    sums = torch.zeros(total, dtype=weights.dtype).index_add_(0, rows, weights)
    return _sparse(rows, cols, weights / sums[rows], total)


def _segments(starts: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions of the concatenated ranges ``[start, start + length)`` and, for each, the range
    it came from (vectorised ``cat(arange(s, s + n))``)."""
    owner = torch.repeat_interleave(torch.arange(lengths.numel()), lengths)
    first = torch.cumsum(lengths, 0) - lengths
    positions = torch.arange(int(lengths.sum())) - first[owner] + starts[owner]
    return positions, owner


def _sparse(
    rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, size: int
) -> torch.Tensor:
    return torch.sparse_coo_tensor(
        torch.stack([rows, cols]), values, (size, size), check_invariants=True
    ).coalesce()


def query_expansion(weights: torch.Tensor, nearest: torch.Tensor, k2: int) -> torch.Tensor:
    """``V[i]`` averaged over the ``k2`` nearest images of ``i`` (``k2 = 1``: unchanged)."""
    if k2 <= 1:
        return weights
    total = weights.shape[0]
    rows, cols = weights.indices()
    values = weights.values()
    per_row = torch.bincount(rows, minlength=total)
    row_start = torch.cumsum(per_row, 0) - per_row
    neighbours = nearest[:, :k2].reshape(-1)
    target = torch.arange(total).repeat_interleave(k2)
    positions, owner = _segments(row_start[neighbours], per_row[neighbours])
    return _sparse(target[owner], cols[positions], values[positions] / k2, total)


def jaccard_distances(
    weights: torch.Tensor, num_query: int, chunk_queries: int = 256
) -> torch.Tensor:
    """(Q, G) Jaccard distances of the first ``num_query`` rows of sparse ``V`` to the rest."""
    total = weights.shape[0]
    num_gallery = total - num_query
    indices, values = weights.indices(), weights.values()
    rows, cols = indices[0], indices[1]
    # Gallery entries grouped by column (the inverted index).
    gallery = rows >= num_query
    g_rows, g_cols, g_values = rows[gallery], cols[gallery], values[gallery]
    order = torch.argsort(g_cols, stable=True)
    g_rows, g_cols, g_values = g_rows[order], g_cols[order], g_values[order]
    per_column = torch.bincount(g_cols, minlength=total)
    column_start = torch.cumsum(per_column, 0) - per_column
    out = torch.zeros(num_query, num_gallery, dtype=values.dtype)
    for start in range(0, num_query, chunk_queries):
        chosen = (rows >= start) & (rows < min(start + chunk_queries, num_query))
        q_rows, q_cols, q_values = rows[chosen], cols[chosen], values[chosen]
        # every (query entry, gallery entry) pair sharing a column
        positions, owner = _segments(column_start[q_cols], per_column[q_cols])
        flat = q_rows[owner] * num_gallery + (g_rows[positions] - num_query)
        shared = torch.minimum(q_values[owner], g_values[positions])
        out.view(-1).index_add_(0, flat, shared)
    return 1 - out / (2 - out)


def k_reciprocal_distances(
    query: torch.Tensor,
    query_levels: torch.Tensor | Sequence[int],
    gallery: torch.Tensor,
    gallery_levels: torch.Tensor | Sequence[int] | None,
    split_sizes: Sequence[int],
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    metric: Distance = "euclidean",
    chunk_rows: int = 1024,
) -> torch.Tensor:
    """(Q, G) re-ranked distances of zero-padded embeddings at their levels.

    ``gallery_levels=None``: an HR gallery (level m). Computed in float64.
    """
    if k1 < 1 or k2 < 1:
        raise ValueError(f"k1 and k2: expected positive neighbourhood sizes, got {k1}, {k2}")
    if not 0 <= lambda_value <= 1:
        raise ValueError(f"lambda_value: expected a weight in [0, 1], got {lambda_value}")
    num_levels = len(split_sizes)
    q_levels = torch.as_tensor(query_levels).long().reshape(-1)
    g_levels = (
        torch.full((gallery.shape[0],), num_levels, dtype=torch.long)
        if gallery_levels is None
        else torch.as_tensor(gallery_levels).long().reshape(-1)
    )
    if q_levels.numel() != query.shape[0] or g_levels.numel() != gallery.shape[0]:
        raise ValueError("expected one level per query and per gallery embedding")
    vectors = torch.cat([query, gallery]).detach().cpu().double()
    levels = torch.cat([q_levels, g_levels])
    if levels.numel() and (int(levels.min()) < 1 or int(levels.max()) > num_levels):
        raise ValueError(f"levels: expected values in 1..{num_levels}")
    num_query = query.shape[0]
    nearest, largest = neighbourhoods(
        vectors, levels, split_sizes, max(k1, k2) + 1, metric, chunk_rows
    )
    weights = reciprocal_weights(vectors, levels, split_sizes, nearest, largest, k1, metric)
    weights = query_expansion(weights, nearest, k2)
    jaccard = jaccard_distances(weights, num_query)
    original = level_distances(
        vectors[:num_query],
        levels[:num_query],
        vectors[num_query:],
        levels[num_query:],
        split_sizes,
        metric,
    ) / largest[:num_query, None].clamp_min(1e-12)
    return (1 - lambda_value) * jaccard + lambda_value * original
