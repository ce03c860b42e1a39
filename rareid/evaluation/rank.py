"""Exact CMC and mAP of a (query x gallery) distance matrix under the Market-1501 rules.

The rules every re-ID library uses: sort each gallery row by distance (ascending and stable, so
tied entries keep gallery order), remove the entries with the query's identity *and* camera
("junk"), skip a query without any remaining true match, CMC = cumulative hit clipped at 1, AP
= mean of the precision at each true match. Gallery identities absent from the queries (e.g.
distractors, pid 0) are ordinary non-matches.

How: queries are taken in chunks so memory stays bounded, on the distance matrix's device (the
same code on CPU and CUDA). Each row is sorted once, as unique int64 keys (the distance's order
bits, then the gallery column) whose plain order is the stable order; then only the few gallery
entries of the query's identity are located in it and counted. Distances wider than 32 bits
(float64, int64) take a stable argsort in their own dtype, so integers beyond 2**53 keep their
exact order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["evaluate_rank", "query_ranks", "summarize_ranks"]

#: Entries (queries x gallery) of one chunk when ``chunk_size`` is not given: the chunk's
#: int64 sort keys take 64 MB.
CHUNK_ELEMENTS = 1 << 23


def as_tensor(values: Any, name: str, device: torch.device | None = None) -> Tensor:
    """A NumPy array or tensor as a detached tensor (on ``device`` when given)."""
    if isinstance(values, Tensor):
        tensor = values.detach()
    else:
        try:
            tensor = torch.as_tensor(np.ascontiguousarray(values))
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"{name}: expected a numpy array or torch tensor, got {type(values)}"
            ) from err
    return tensor if device is None else tensor.to(device)


def _as_ids(values: Any, name: str, count: int, device: torch.device) -> Tensor:
    ids = as_tensor(values, name, device).reshape(-1)
    if ids.numel() != count:
        raise ValueError(
            f"{name}: expected {count} values to match the distance matrix, got {ids.numel()}"
        )
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise TypeError(f"{name}: expected integer ids, got dtype {ids.dtype}")
    return ids.long()


def _order_key32(dist: Tensor) -> Tensor | None:
    """int32 keys that order like ``dist`` and are equal exactly where it is, or None for dtypes
    wider than 32 bits (float64, int64)."""
    if dist.dtype in (torch.float16, torch.bfloat16, torch.float32):
        values = dist.float()
        bits = values.view(torch.int32)
        if bool(bits.min() < 0):  # negative numbers or -0.0
            # -0.0 becomes +0.0; the magnitude bits of negative numbers are flipped.
            bits = (values + 0.0).view(torch.int32)
            bits = bits ^ ((bits >> 31) & 0x7FFFFFFF)
        return bits
    if dist.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32):
        return dist.int()
    return None


def _sort_rows_(keys: Tensor) -> Tensor:
    """Each row of ``keys`` sorted ascending, in place (keys are unique: no stability needed)."""
    if keys.device.type == "cpu":  # NumPy's SIMD sort outpaces torch's CPU sort
        keys.numpy().sort(axis=1)
        return keys
    return keys.copy_(torch.sort(keys, dim=1).values)


class _Gallery:
    """The gallery side of the ranking, prepared once for every chunk of queries."""

    def __init__(self, pids: Tensor, camids: Tensor, chunk_size: int) -> None:
        self.num_g = pids.numel()
        self.camids = camids
        self.by_pid = torch.argsort(pids, stable=True)  # gallery columns grouped by identity
        self.sorted_pids = pids[self.by_pid]
        self.columns = torch.arange(self.num_g, device=pids.device)
        # Sort keys of a chunk, reused: a fresh buffer this size page-faults on every chunk.
        self.keys = torch.empty(0, dtype=torch.int64, device=pids.device)
        self.chunk_elements = chunk_size * self.num_g

    def same_identity(self, q_pids: Tensor) -> tuple[Tensor, Tensor]:
        """The gallery columns of each query's identity, padded: (columns, present), (n, s).
        The true matches and the junk are among them, and only they need a rank."""
        start = torch.searchsorted(self.sorted_pids, q_pids)
        count = torch.searchsorted(self.sorted_pids, q_pids, right=True) - start
        slot = torch.arange(max(1, int(count.max())), device=q_pids.device)
        present = slot < count[:, None]
        index = (start[:, None] + slot).clamp(max=self.num_g - 1)
        return torch.where(present, self.by_pid[index], 0), present

    def positions(self, dist: Tensor, columns: Tensor) -> Tensor:
        """Position of the gallery entries ``columns`` (n, s) in the stable order of their row.

        Up to 32 bits, a distance and its column form one unique int64 key whose plain order
        is the stable order, and a binary search finds each entry among the sorted keys. Wider
        distances take a stable argsort and its inverse.
        """
        key32 = _order_key32(dist)
        if key32 is None:
            order = torch.argsort(dist, dim=1, stable=True)
            position = torch.empty_like(order)
            position.scatter_(1, order, self.columns.expand_as(order))
            return position.gather(1, columns)
        if self.keys.numel() < dist.numel():
            self.keys = torch.empty(self.chunk_elements, dtype=torch.int64, device=dist.device)
        keys = self.keys[: dist.numel()].view(dist.shape).copy_(key32)
        keys.bitwise_left_shift_(32).bitwise_or_(self.columns)
        wanted = keys.gather(1, columns)
        return torch.searchsorted(_sort_rows_(keys), wanted)


def _rank_chunk(
    dist: Tensor, q_pids: Tensor, q_camids: Tensor, gallery: _Gallery
) -> tuple[Tensor, Tensor]:
    """First-match rank and AP of a chunk of queries: see :func:`query_ranks`."""
    # A NaN makes the sum NaN: one cheap reduction, the exact check only then.
    if dist.is_floating_point() and bool(torch.isnan(dist.sum())) and bool(dist.isnan().any()):
        raise ValueError("distmat contains NaN; distances must be real numbers")
    columns, present = gallery.same_identity(q_pids)
    junk = present & (gallery.camids[columns] == q_camids[:, None])
    # Visit each row's entries in ranking order (padding last) and count as we go.
    position = torch.where(present, gallery.positions(dist, columns), gallery.num_g)
    position, visit = torch.sort(position, dim=1)
    junk, good = junk.gather(1, visit), (present & ~junk).gather(1, visit)
    rank = position + 1 - torch.cumsum(junk, 1)  # 1-based, among the entries that are kept
    hits = torch.cumsum(good, 1)
    num_good = hits[:, -1]
    first = torch.where(num_good > 0, torch.where(good, rank, gallery.num_g + 1).amin(1) - 1, -1)
    precision = torch.where(good, hits.double() / rank.double(), 0)
    # A left-to-right sum, as in the per-query loop: padding cannot change the rounding.
    ap = torch.cumsum(precision, 1)[:, -1]
    return first, ap / num_good.clamp_min(1)


def query_ranks(
    distmat: Any,
    q_pids: Any,
    g_pids: Any,
    q_camids: Any,
    g_camids: Any,
    chunk_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-query first-match rank and AP under the Market-1501 rules.

    Returns ``first`` (int64, 0-based rank of the first true match among the kept gallery
    entries, -1 for a query without any) and ``ap`` (float64, 0 where ``first == -1``), on the
    distance matrix's device. ``chunk_size`` queries are sorted at a time (default: about
    ``CHUNK_ELEMENTS`` entries per chunk); the numbers do not depend on it.
    """
    dist = as_tensor(distmat, "distmat")
    if dist.dim() != 2:
        raise ValueError(
            f"distmat: expected a 2-D (num_query, num_gallery) matrix, got {tuple(dist.shape)}"
        )
    if dist.is_complex() or dist.dtype == torch.bool:
        raise TypeError(f"distmat: expected real distances, got dtype {dist.dtype}")
    num_q, num_g = dist.shape
    device = dist.device
    q_pids_t = _as_ids(q_pids, "q_pids", num_q, device)
    g_pids_t = _as_ids(g_pids, "g_pids", num_g, device)
    q_camids_t = _as_ids(q_camids, "q_camids", num_q, device)
    g_camids_t = _as_ids(g_camids, "g_camids", num_g, device)
    if chunk_size is None:
        chunk_size = max(1, CHUNK_ELEMENTS // max(1, num_g))
    if chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive number of queries, got {chunk_size}")
    first = torch.full((num_q,), -1, dtype=torch.long, device=device)
    ap = torch.zeros(num_q, dtype=torch.float64, device=device)
    if num_g == 0:
        return first, ap
    gallery = _Gallery(g_pids_t, g_camids_t, chunk_size)
    for start in range(0, num_q, chunk_size):
        rows = slice(start, start + chunk_size)
        first[rows], ap[rows] = _rank_chunk(dist[rows], q_pids_t[rows], q_camids_t[rows], gallery)
    return first, ap


def summarize_ranks(first: Tensor, ap: Tensor, max_rank: int = 20) -> tuple[np.ndarray, float, int]:
    """(CMC[max_rank], mAP, number of scored queries) from :func:`query_ranks` output.

    Queries with ``first == -1`` are skipped. With no scored query the CMC and mAP are NaN.
    """
    scored = first >= 0
    num_scored = int(scored.sum())
    if num_scored == 0:
        return np.full(max_rank, np.nan), float("nan"), 0
    ranks = torch.arange(max_rank, device=first.device)
    hits = (first[scored][:, None] <= ranks[None, :]).sum(0)
    cmc = hits.double().cpu().numpy() / num_scored
    return cmc, float(ap[scored].double().sum().item() / num_scored), num_scored


def evaluate_rank(
    distmat: Any,
    q_pids: Any,
    g_pids: Any,
    q_camids: Any,
    g_camids: Any,
    max_rank: int = 20,
    chunk_size: int | None = None,
) -> tuple[np.ndarray, float]:
    """Market-1501 evaluation of a (Q, G) distance matrix: (CMC of length ``max_rank``, mAP).

    Works on NumPy arrays or tensors of any real dtype, on the distance matrix's device.
    Unlike libraries that shrink ``max_rank`` to the gallery size, the CMC keeps length
    ``max_rank``; ranks beyond the kept gallery entries hold the final value.

    Raises ValueError on NaN distances and when no query has a valid match.
    """
    if max_rank < 1:
        raise ValueError(f"max_rank: expected >= 1, got {max_rank}")
    first, ap = query_ranks(distmat, q_pids, g_pids, q_camids, g_camids, chunk_size)
    cmc, mean_ap, num_scored = summarize_ranks(first, ap, max_rank)
    if num_scored == 0:
        raise ValueError(
            "evaluate_rank: no query has a valid match in the gallery (every same-identity "
            "gallery image is in the query's camera, or the identity is absent): check q_pids/"
            "g_pids and q_camids/g_camids"
        )
    return cmc, mean_ap
