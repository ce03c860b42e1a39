"""Level-aware distances: a query at level k_q and a gallery image at level k_g are compared on
their first min(k_q, k_g) sub-vectors (paper Eq. 2), without any (Q, G, d) intermediate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args

import torch
from torch import Tensor

from rareid.evaluation.rank import as_tensor
from rareid.levels import prefix_lengths

__all__ = ["Distance", "level_distances"]

#: Distances between embeddings: squared Euclidean (the paper's) or 1 - cosine similarity.
Distance = Literal["euclidean", "cosine"]


def _check_levels(
    levels: Any, count: int, name: str, num_levels: int, device: torch.device
) -> Tensor:
    checked = as_tensor(levels, name, device).reshape(-1).long()
    if checked.numel() != count:
        raise ValueError(f"{name}: expected {count} levels (one per row), got {checked.numel()}")
    if count and (int(checked.min()) < 1 or int(checked.max()) > num_levels):
        raise ValueError(
            f"{name}: levels must be in 1..{num_levels} (one per sub-vector of split_sizes), "
            f"got {int(checked.min())}..{int(checked.max())}"
        )
    return checked


def _prefix_sq_norms(embeddings: Tensor, bounds: list[int]) -> Tensor:
    """(N, m) squared norms of the prefixes ending at each sub-vector boundary."""
    squares = embeddings * embeddings
    starts = [0, *bounds[:-1]]
    blocks = [squares[:, start:stop].sum(1) for start, stop in zip(starts, bounds, strict=True)]
    return torch.cumsum(torch.stack(blocks, 1), 1)


def _block(
    query: Tensor,
    gallery: Tensor,
    query_sq: Tensor,
    gallery_sq: Tensor,
    metric: Distance,
    eps: float = 1e-12,
) -> Tensor:
    """Distances of prefix blocks ``query`` (n, p) and ``gallery`` (G, p), given their squared
    norms."""
    if metric == "euclidean":
        out = torch.addmm(gallery_sq[None, :], query, gallery.T, alpha=-2.0)
        return out.add_(query_sq[:, None]).clamp_(min=0)
    query_unit = query / query_sq.sqrt().clamp_min(eps)[:, None]
    gallery_unit = gallery / gallery_sq.sqrt().clamp_min(eps)[:, None]
    return torch.mm(query_unit, gallery_unit.T).neg_().add_(1).clamp_(min=0)


def _check_inputs(
    query: Tensor, gallery: Tensor, split_sizes: Sequence[int], metric: Distance
) -> list[int]:
    """The sub-vector sizes, once the metric, the sizes and the embedding shapes agree."""
    if metric not in get_args(Distance):
        raise ValueError(f"metric: expected one of {get_args(Distance)}, got {metric!r}")
    sizes = [int(size) for size in split_sizes]
    if not sizes or any(size <= 0 for size in sizes):
        raise ValueError(
            f"split_sizes: expected positive sub-vector sizes, got {list(split_sizes)}"
        )
    if query.dim() != 2 or gallery.dim() != 2:
        raise ValueError(
            f"query/gallery: expected 2-D (N, d) embeddings, got {tuple(query.shape)} and "
            f"{tuple(gallery.shape)}"
        )
    dim = sum(sizes)
    if query.shape[1] != dim or gallery.shape[1] != dim:
        raise ValueError(
            f"split_sizes {sizes} sum to {dim} but the embeddings have {query.shape[1]} (query) "
            f"and {gallery.shape[1]} (gallery) dimensions"
        )
    return sizes


def _full_gallery(
    query: Tensor,
    q_levels: Tensor,
    gallery: Tensor,
    q_sq: Tensor,
    g_sq: Tensor,
    bounds: list[int],
    metric: Distance,
) -> Tensor:
    """Every gallery image at least as long as every query: one block per query level."""
    present_levels = torch.unique(q_levels).tolist()
    if len(present_levels) == 1:
        level = present_levels[0]
        width = bounds[level - 1]
        return _block(
            query[:, :width],
            gallery[:, :width],
            q_sq[:, level - 1],
            g_sq[:, level - 1],
            metric,
        )
    out = torch.empty(query.shape[0], gallery.shape[0], dtype=query.dtype, device=query.device)
    for level in present_levels:
        width = bounds[level - 1]
        rows = (q_levels == level).nonzero(as_tuple=True)[0]
        block = _block(
            query[rows, :width],
            gallery[:, :width],
            q_sq[rows, level - 1],
            g_sq[:, level - 1],
            metric,
        )
        out.index_copy_(0, rows, block)
    return out


def _mixed_gallery(
    query: Tensor,
    q_levels: Tensor,
    gallery: Tensor,
    g_levels: Tensor,
    q_sq: Tensor,
    g_sq: Tensor,
    bounds: list[int],
    metric: Distance,
) -> Tensor:
    """Gallery levels vary: columns sorted by level so each (query level, gallery level) pair is
    a contiguous column range; every gallery level >= the query's shares the query's prefix."""
    dtype, device = query.dtype, query.device
    num_q, num_g = query.shape[0], gallery.shape[0]
    g_order = torch.argsort(g_levels, stable=True)
    g_sorted = gallery[g_order]
    g_sq_sorted = g_sq[g_order]
    g_levels_sorted = g_levels[g_order]
    inverse = torch.empty_like(g_order)
    inverse[g_order] = torch.arange(num_g, device=device)
    out = torch.empty(num_q, num_g, dtype=dtype, device=device)
    for level in torch.unique(q_levels).tolist():
        rows = (q_levels == level).nonzero(as_tuple=True)[0]
        q_rows, q_sq_rows = query[rows], q_sq[rows]
        block = torch.empty(rows.numel(), num_g, dtype=dtype, device=device)
        start = 0
        for g_level in range(1, level + 1):
            # Columns of gallery level g_level < level (its prefix), then all levels >= level.
            stop = int((g_levels_sorted <= g_level).sum()) if g_level < level else num_g
            if stop > start:
                width = bounds[g_level - 1]
                block[:, start:stop] = _block(
                    q_rows[:, :width],
                    g_sorted[start:stop, :width],
                    q_sq_rows[:, g_level - 1],
                    g_sq_sorted[start:stop, g_level - 1],
                    metric,
                )
            start = stop
        out.index_copy_(0, rows, block[:, inverse])
    return out


def level_distances(
    query: Tensor,
    query_levels: Tensor | Sequence[int],
    gallery: Tensor,
    gallery_levels: Tensor | Sequence[int] | None,
    split_sizes: Sequence[int],
    metric: Distance = "euclidean",
) -> Tensor:
    """(Q, G) distances over the first ``min(k_q, k_g)`` sub-vectors (paper Eq. 2).

    ``metric``: ``"euclidean"`` (squared, the paper's) or ``"cosine"`` (1 - cos of the prefixes).
    ``gallery_levels=None`` means a full-length (level m) gallery. Queries (and the gallery, when
    its levels vary) are grouped by level, so each group costs one matrix product on its prefix.
    Output is float32 (float64 if an input is), in the original query and gallery order, on the
    query's device.
    """
    sizes = _check_inputs(query, gallery, split_sizes, metric)
    dtype = torch.float64 if torch.float64 in (query.dtype, gallery.dtype) else torch.float32
    query = query.detach().to(dtype)
    device = query.device
    gallery = gallery.detach().to(dtype=dtype, device=device)
    num_levels = len(sizes)
    num_q, num_g = query.shape[0], gallery.shape[0]
    q_levels = _check_levels(query_levels, num_q, "query_levels", num_levels, device)
    bounds = prefix_lengths(sizes)
    if num_q == 0 or num_g == 0:
        return torch.empty(num_q, num_g, dtype=dtype, device=device)
    q_sq = _prefix_sq_norms(query, bounds)
    g_sq = _prefix_sq_norms(gallery, bounds)
    g_levels = None
    if gallery_levels is not None:
        g_levels = _check_levels(gallery_levels, num_g, "gallery_levels", num_levels, device)
        if int(g_levels.min()) >= int(q_levels.max()):
            g_levels = None  # the query's own prefix every time: same as a full-length gallery
    if g_levels is None:
        return _full_gallery(query, q_levels, gallery, q_sq, g_sq, bounds, metric)
    return _mixed_gallery(query, q_levels, gallery, g_levels, q_sq, g_sq, bounds, metric)
