"""MLR evaluation: level-aware distances, the Market-1501 rank evaluation, and a torchmetrics Metric.

Semantics follow the per-query algorithm every re-ID library uses (Market-1501): sort the
gallery by distance (ascending, stable, so ties keep gallery order), drop gallery entries with
the query's identity *and* camera ("junk"), skip queries without a valid match, CMC = cumulative
hit clipped at 1, AP = mean of the precision at each true match (non-interpolated).

Speed: the evaluation never sorts a whole gallery row. Each query only needs the rank of its few
true matches among the valid entries, i.e. how many gallery entries come before each match in
(distance, gallery index) order. Those counts come from a per-row histogram over monotone bins;
only entries that share a bin with a match are compared exactly. Two implementations give the
same numbers:

- on CPU, float32/float64 matrices: the C extension ``rareid._rankcount`` (built at install
  where a C compiler exists), one multi-threaded pass over the matrix;
- elsewhere (GPU, other dtypes, or the extension not built): vectorised torch passes chunked
  over queries, the in-bin entries ordered by one small sort for all queries.

A stable sort of the row is the fallback for rows neither can serve (non-finite match
distances; massive ties on the torch path), and gives identical numbers.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from rareid.data.protocol import MAX_TRIALS, Role
from rareid.levels import normalize_rates

try:  # optional C accelerator, see the module docstring
    from rareid import _rankcount
except ImportError:  # no compiler at install time: the torch path gives the same numbers
    _rankcount = None

__all__ = [
    "MLRMetric",
    "evaluate_rank",
    "level_distances",
    "native_counting_available",
    "query_ranks",
    "summarize_ranks",
]

#: CMC ranks reported by :class:`MLRMetric` (those ``<= max_rank``).
REPORTED_RANKS = (1, 5, 10, 20)
#: Elements (queries x gallery) handled per chunk when ``chunk_size`` is not given (0.5 M: the
#: chunk's buffers stay in the last-level cache).
_CHUNK_ELEMENTS = 1 << 19
#: log2 of the histogram bins per query row of the counting method.
_LOG2_BINS = 11
#: Candidate flags scanned at once (bytes; several chunks).
_CANDIDATE_SCAN_ELEMENTS = 1 << 24
_DISTANCES = ("euclidean", "cosine")


# ----------------------------------------------------------------------------- helpers
def _as_tensor(x: Any, name: str, device: torch.device | None = None) -> Tensor:
    if isinstance(x, Tensor):
        t = x.detach()
    else:
        try:
            t = torch.as_tensor(np.ascontiguousarray(x))
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"{name}: expected a numpy array or torch tensor, got {type(x)}"
            ) from err
    return t.to(device) if device is not None else t


def _as_ids(x: Any, name: str, n: int, device: torch.device) -> Tensor:
    t = _as_tensor(x, name, device).reshape(-1)
    if t.numel() != n:
        raise ValueError(
            f"{name}: expected {n} values to match the distance matrix, got {t.numel()}"
        )
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{name}: expected integer ids, got dtype {t.dtype}")
    return t.long()


def _float_dist(d: Tensor) -> Tensor:
    """Distances in a float dtype that preserves their order exactly (ints -> float64)."""
    if d.dtype in (torch.float16, torch.bfloat16):
        return d.float()
    if not d.is_floating_point():
        return d.double()
    return d


class _GalleryByPid:
    """Gallery indices grouped by identity (CSR), so a query finds its same-identity entries
    without scanning the gallery: junk and true matches are both among them."""

    def __init__(self, g_pids: Tensor, g_camids: Tensor) -> None:
        self.order = torch.argsort(g_pids, stable=True)
        self.uniq, self.counts = torch.unique_consecutive(g_pids[self.order], return_counts=True)
        self.starts = torch.cumsum(self.counts, 0) - self.counts
        self.g_camids = g_camids
        self.num_g = g_pids.numel()

    def same_pid(self, q_pids: Tensor, q_camids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(S, good, junk): padded (n, s) gallery indices of the query's identity (ascending),
        masks of true matches (other camera) and junk (same camera)."""
        n = q_pids.numel()
        if self.uniq.numel() == 0:
            empty = torch.zeros(n, 0, dtype=torch.long, device=q_pids.device)
            return empty, empty.bool(), empty.bool()
        pos = torch.searchsorted(self.uniq, q_pids).clamp(max=self.uniq.numel() - 1)
        found = self.uniq[pos] == q_pids
        cnt = torch.where(found, self.counts[pos], torch.zeros_like(pos))
        smax = int(cnt.max()) if n else 0
        ar = torch.arange(smax, device=q_pids.device)
        present = ar[None, :] < cnt[:, None]
        flat = (self.starts[pos][:, None] + ar[None, :]).clamp(max=self.num_g - 1)
        s_idx = torch.where(present, self.order[flat], torch.zeros_like(flat))
        same_cam = self.g_camids[s_idx] == q_camids[:, None]
        return s_idx, present & ~same_cam, present & same_cam


def _count_before_sort(dist: Tensor, s_idx: Tensor) -> Tensor:
    """Entries before each ``s_idx`` entry in its row, via a full stable sort (fallback)."""
    order = torch.sort(dist, dim=1, stable=True).indices
    pos = torch.empty_like(order)
    ar = torch.arange(dist.shape[1], device=dist.device).expand_as(order)
    pos.scatter_(1, order, ar)
    return pos.gather(1, s_idx)


class _Workspace:
    """Chunk-sized buffers reused across chunks: fresh (c, G) allocations page-fault on every
    chunk and cost as much as the arithmetic."""

    def __init__(self) -> None:
        self.buffers: dict[str, Tensor] = {}

    def get(
        self, name: str, shape: tuple[int, int], dtype: torch.dtype, device: torch.device
    ) -> Tensor:
        buf = self.buffers.get(name)
        numel = shape[0] * shape[1]
        if buf is None or buf.dtype != dtype or buf.device != device or buf.numel() < numel:
            buf = torch.empty(numel, dtype=dtype, device=device)
            self.buffers[name] = buf
        return buf[:numel].view(shape)


def _order_by_group_key(group: Tensor, keys: Tensor) -> Tensor:
    """Stable order of entries by (group, key); entries are given in index order."""
    if keys.dtype == torch.int32 and group.numel() and int(group.max()) < (1 << 31):
        return torch.argsort((group << 32) | (keys.long() + (1 << 31)), stable=True)
    order = torch.argsort(keys, stable=True)
    return order[torch.argsort(group[order], stable=True)]


def _order_keys(values: Tensor) -> Tensor:
    """Integers in the order of float ``values``, equal exactly when the values are equal.

    Non-negative floats already order as their bit patterns; otherwise -0.0 is folded into
    +0.0 and the magnitude bits of negative numbers are flipped.
    """
    itype = torch.int32 if values.element_size() == 4 else torch.int64
    bits = values.view(itype)
    if bits.numel() == 0 or int(bits.amin()) >= 0:
        return bits
    bits = (values + 0.0).view(itype)
    sign = bits.element_size() * 8 - 1
    return bits ^ ((bits >> sign) & ((1 << sign) - 1))


def _nonzero_sparse(flags: Tensor) -> Tensor:
    """Indices of the non-zero entries of a 1-D tensor of one-byte flags (bool or int8) that has
    few, in ascending order.

    Scans the flags 8 at a time as int64 words, several times faster than ``nonzero`` on the
    bytes, then looks inside the few words that are not zero.
    """
    body = flags.numel() - flags.numel() % 8
    if body == 0 or flags.storage_offset() % 8:
        return flags.nonzero().squeeze(1)
    hit = flags[:body].view(torch.int64).nonzero().squeeze(1)
    inside = flags[:body].view(-1, 8).index_select(0, hit).nonzero()
    tail = flags[body:].nonzero().squeeze(1) + body
    return torch.cat([hit[inside[:, 0]] * 8 + inside[:, 1], tail])


def _bin_maps(t: Tensor, sel: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per row, a linear map of distances onto histogram bins spanning its selected distances.

    Returns (usable rows, origin, scale); rows whose selected distances are not finite or span
    a range beyond the float type are not usable and take the sort path.
    """
    inf = torch.tensor(float("inf"), dtype=t.dtype, device=t.device)
    finite = torch.where(sel, torch.isfinite(t), True).all(1)
    lo = torch.where(sel, t, inf).amin(1)
    hi = torch.where(sel, t, -inf).amax(1)
    ok = sel.any(1) & finite
    lo, hi = torch.where(ok, lo, 0), torch.where(ok, hi, 0)
    nbins = 1 << _LOG2_BINS
    # A single selected distance still gets narrow bins around it (width ~ |t| / nbins).
    span = torch.where(hi > lo, hi - lo, lo.abs()).clamp_min(1e-30)
    scale = (nbins - 1) / span
    ok &= torch.isfinite(scale) & (scale > 0)
    scale = torch.where(ok, scale, 1)
    origin = torch.where(ok, lo - 2 / scale, 0)  # the lowest selected distance lands in bin ~2
    return ok, origin, scale


_NAN_ERROR = "distmat contains NaN; distances must be real numbers"


def _reject_nan(values: Tensor) -> None:
    """Raise on NaN: it has no place in a ranking. One cheap sum, the exact check only if NaN."""
    if not values.is_floating_point():
        return
    if bool(torch.isnan(values.sum())) and bool(torch.isnan(values).any()):
        raise ValueError(_NAN_ERROR)


def native_counting_available() -> bool:
    """Whether the C rank counter (``rareid._rankcount``) was built: CPU evaluation is several
    times faster with it. Without it (no C compiler at install) the numbers are the same."""
    return _rankcount is not None


def _native_serves(dist: Tensor) -> bool:
    return (
        _rankcount is not None
        and dist.device.type == "cpu"
        and dist.dtype in (torch.float32, torch.float64)
        and (dist.stride(1) == 1 or dist.shape[1] <= 1)
        and dist.stride(0) >= dist.shape[1]
        and dist.shape[1] < 2**31  # its bucket indices are int32
    )


def _count_by_native(dist: Tensor, s_idx: Tensor, sel: Tensor, count: Tensor) -> Tensor:
    """The C path of :func:`_count_before`: fills ``count`` at ``sel`` for the rows it serves
    and returns those rows (the others, non-finite selected distances, take the sort path).
    Rejects NaN anywhere."""
    num_q, g = dist.shape
    columns = s_idx.contiguous()
    selected = sel.to(torch.uint8).contiguous()
    served = torch.zeros(num_q, dtype=torch.uint8)
    assert count.is_contiguous() and count.dtype == torch.int64 and count.shape == s_idx.shape
    nan = _rankcount.count_before(
        dist.data_ptr(),
        dist.dtype == torch.float64,
        num_q,
        g,
        dist.stride(0),
        columns.data_ptr(),
        selected.data_ptr(),
        columns.shape[1],
        count.data_ptr(),
        served.data_ptr(),
        torch.get_num_threads(),
    )
    if nan:
        raise ValueError(_NAN_ERROR)
    return served.bool()


def _to_bins_(x: Tensor, scale: Tensor, top: int) -> Tensor:
    """Monotone bins, in place: ``x`` (distances minus the row's origin) becomes
    ``clamp(x * scale, 0, top)``, whose integer part is the bin.

    Separately rounded ops (no fused multiply-add), so recomputing the bin of one entry gives
    exactly the value of the whole-row pass. Also rejects NaN, the one value the map keeps.
    """
    x.mul_(scale).clamp_(0, top)
    _reject_nan(x)
    return x


def _count_before(
    dist_all: Tensor, s_idx: Tensor, t: Tensor, sel: Tensor, chunk_size: int, method: str
) -> Tensor:
    """For every selected ``s_idx`` entry (distances ``t``), how many entries precede it in its
    row in (distance, gallery index) order (other entries: unspecified). Rejects NaN anywhere.

    Histogram path (C where :func:`_native_serves`, else torch, one chunk of rows at a time):
    every row is binned by a monotone map spanning its selected distances, so entries in lower
    bins are strictly smaller; the entries sharing a bin with a selected one (a few per row) are
    compared exactly. Rows the histogram cannot serve (non-finite selected distances; massive
    ties on the torch path) and ``method="sort"`` use a stable sort of the row: the same numbers.
    """
    num_q = dist_all.shape[0]
    dev = dist_all.device
    count = torch.zeros_like(s_idx)
    if method == "count" and _native_serves(dist_all):
        served = _count_by_native(dist_all, s_idx, sel, count)
    else:
        if method == "count":
            served, origin, scale = _bin_maps(t, sel)
        else:
            served = torch.zeros(num_q, dtype=torch.bool, device=dev)
        if bool(served.any()):  # reads every row, rejecting NaN on the way
            _count_by_histogram(dist_all, s_idx, t, sel, served, origin, scale, chunk_size, count)
        else:
            _reject_nan(dist_all)
    sort_rows = (sel.any(1) & ~served).nonzero().squeeze(1)
    for start in range(0, sort_rows.numel(), chunk_size):
        rows_s = sort_rows[start : start + chunk_size]
        count[rows_s] = _count_before_sort(_float_dist(dist_all[rows_s]), s_idx[rows_s])
    return count


def _count_by_histogram(
    dist_all: Tensor,
    s_idx: Tensor,
    t: Tensor,
    sel: Tensor,
    hist_rows: Tensor,
    origin: Tensor,
    scale: Tensor,
    chunk_size: int,
    count: Tensor,
) -> None:
    """The histogram path of :func:`_count_before` for ``hist_rows`` (fills ``count`` there);
    ``t`` holds the distances of the ``s_idx`` entries.

    Rows it finds crowded (massive ties) are taken out of ``hist_rows``, for the sort path.
    Per chunk of rows run the passes over every entry (bins, histogram, candidate flags); the
    marks of the selected bins and the scan of the flags run once per group of chunks.
    """
    num_q, g = dist_all.shape
    dev = dist_all.device
    nbins = 1 << _LOG2_BINS
    # Entries up to about twice the selected range keep their own bins and only those beyond
    # share the top one: a crowded bin would serialise the histogram's increments.
    top = 2 * nbins + 2
    width = top + 1
    # The bins of the selected entries, computed from their distances by the same ops as the
    # whole-row pass (so exactly equal); unselected columns point at a spare bin.
    b_sel = _to_bins_(torch.sub(t, origin[:, None]), scale[:, None], top).long()
    b_sel = torch.where(sel & hist_rows[:, None], b_sel, width)
    group_rows = max(chunk_size, _CANDIDATE_SCAN_ELEMENTS // g)
    work = _Workspace()
    # Rows of ones, expanded: scatter_add_ runs ~1.6x slower from a stride-0 scalar.
    ones = torch.ones(1, g, dtype=torch.int32, device=dev)
    found: list[Tensor] = []  # flat indices (row * g + column) of the candidates
    for group_start in range(0, num_q, group_rows):
        group_stop = min(group_start + group_rows, num_q)
        n = group_stop - group_start
        b_g = b_sel[group_start:group_stop]
        # int8 rather than bool: gather writes it 1.6x faster.
        mark = work.get("mark", (n, width + 1), torch.int8, dev).zero_().scatter_(1, b_g, 1)
        flagged = work.get("flagged", (n, g), torch.int8, dev)
        for start in range(group_start, group_stop, chunk_size):
            stop = min(start + chunk_size, group_stop)
            c = stop - start
            rows = slice(start - group_start, stop - group_start)
            dist = _float_dist(dist_all[start:stop])
            x = torch.sub(
                dist, origin[start:stop, None], out=work.get("x", (c, g), dist.dtype, dev)
            )
            _to_bins_(x, scale[start:stop, None], top)
            # Through int32: float -> int64 has no vector instruction; two steps are 2x faster.
            bins = work.get("bins", (c, g), torch.int64, dev)
            bins.copy_(work.get("bins32", (c, g), torch.int32, dev).copy_(x))
            # Bin b counts in column b + 1, so the running sum at column b counts the entries
            # in strictly lower bins.
            hist = work.get("hist", (c, width + 2), torch.int32, dev).zero_()
            hist[:, 1:].scatter_add_(1, bins, ones.expand(c, g))
            cum = torch.cumsum(hist, 1, out=work.get("cum", (c, width + 2), torch.int32, dev))
            count[start:stop] = cum.gather(1, b_g[rows])
            torch.gather(mark[rows], 1, bins, out=flagged[rows])
        flat, crowded = _candidates(flagged, chunk_size)
        hist_rows[group_start:group_stop] &= ~crowded
        found.append(flat + group_start * g)
    flat = torch.cat(found)  # row-major: sorted by (row, index)
    rows = torch.div(flat, g, rounding_mode="floor")
    # Order the candidates by (row, bin, distance, index); the bins are recomputed exactly.
    values = _float_dist(torch.take(dist_all, flat))
    x = torch.sub(values, origin[rows])
    group = rows * width + _to_bins_(x, scale[rows], top).long()
    order = _order_by_group_key(group, _order_keys(values))
    group_sorted = group[order]
    starts = torch.ones_like(group_sorted, dtype=torch.bool)
    starts[1:] = group_sorted[1:] != group_sorted[:-1]
    position = torch.arange(order.numel(), device=dev)
    within = position - torch.cummax(torch.where(starts, position, 0), 0).values
    pos_of = torch.empty_like(order)
    pos_of[order] = position
    # Locate every selected entry among the candidates (flat indices are sorted).
    sel_h = sel & hist_rows[:, None]
    rows_g = torch.arange(num_q, device=dev)[:, None] * g
    where = torch.searchsorted(flat, (rows_g + s_idx)[sel_h])
    count[sel_h] += within[pos_of[where]]


def _candidates(flagged: Tensor, chunk_rows: int) -> tuple[Tensor, Tensor]:
    """Flat indices of the flagged entries of a (rows, g) block, except in crowded rows (more
    than half their entries flagged: massive ties, cheaper to sort), and the crowded rows.

    A densely flagged block is scanned a chunk of rows at a time, so that its index lists stay
    bounded by a chunk.
    """
    n, g = flagged.shape
    body = n * g // 8 * 8
    dense = int(torch.count_nonzero(flagged.view(-1)[:body].view(torch.int64))) > body // 32
    step = chunk_rows if dense else n
    parts = []
    crowded = torch.zeros(n, dtype=torch.bool, device=flagged.device)
    for start in range(0, n, step):
        block = flagged[start : start + step]
        flat = _nonzero_sparse(block.reshape(-1))
        rows = torch.div(flat, g, rounding_mode="floor")
        crowd = torch.bincount(rows, minlength=block.shape[0]) > g // 2
        if bool(crowd.any()):
            crowded[start : start + step] = crowd
            flat = flat[~crowd[rows]]
        parts.append(flat + start * g)
    return torch.cat(parts), crowded


def _exclusive_count_in_order(flags: Tensor, order: Tensor) -> Tensor:
    """For every column, how many flagged columns precede it in ``order`` (row-wise)."""
    in_order = flags.gather(1, order).long()
    before = torch.cumsum(in_order, 1) - in_order
    return torch.empty_like(before).scatter_(1, order, before)


def query_ranks(
    distmat: Any,
    q_pids: Any,
    g_pids: Any,
    q_camids: Any,
    g_camids: Any,
    chunk_size: int | None = None,
    method: str = "count",
) -> tuple[Tensor, Tensor]:
    """Per-query first-match rank and AP under the Market-1501 rules.

    Returns ``first`` (int64, 0-based rank of the first true match among valid gallery entries,
    -1 for a query without any valid match) and ``ap`` (float64, 0 where ``first == -1``), on the
    distance matrix's device. ``method="sort"`` forces the stable-sort path (same numbers).
    """
    dist_all = _as_tensor(distmat, "distmat")
    if dist_all.dim() != 2:
        raise ValueError(
            f"distmat: expected a 2-D (num_query, num_gallery) matrix, got {tuple(dist_all.shape)}"
        )
    if method not in ("count", "sort"):
        raise ValueError(f"method: expected 'count' or 'sort', got {method!r}")
    device = dist_all.device
    num_q, num_g = dist_all.shape
    qp = _as_ids(q_pids, "q_pids", num_q, device)
    gp = _as_ids(g_pids, "g_pids", num_g, device)
    qc = _as_ids(q_camids, "q_camids", num_q, device)
    gc = _as_ids(g_camids, "g_camids", num_g, device)
    first = torch.full((num_q,), -1, dtype=torch.long, device=device)
    ap = torch.zeros(num_q, dtype=torch.float64, device=device)
    if num_q == 0 or num_g == 0:
        return first, ap
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_ELEMENTS // num_g)
    if chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive number of queries, got {chunk_size}")
    s_idx, good, junk = _GalleryByPid(gp, gc).same_pid(qp, qc)
    n_good = good.sum(1)
    valid = n_good > 0
    if not bool(valid.any()):
        _reject_nan(dist_all)
        return first, ap
    t = _float_dist(dist_all.gather(1, s_idx))  # distances of the same-identity entries
    count = _count_before(dist_all, s_idx, t, good, chunk_size, method)
    # Among the query's same-identity entries: how many junk / good ones come before each.
    # Columns are in gallery order, so a stable sort by distance gives (distance, index) order.
    order = torch.sort(t, dim=1, stable=True).indices
    junk_before = _exclusive_count_in_order(junk, order)
    good_before = _exclusive_count_in_order(good, order)
    rank = count - junk_before  # position among valid (non-junk) entries, 0-based
    big = torch.iinfo(torch.long).max
    first = torch.where(valid, torch.where(good, rank, big).amin(1), first)
    precision = (good_before + 1).double() / (rank + 1).double()
    # A left-to-right scan (not a tree reduction) so that padding columns cannot change the
    # rounding: the same query gets the same AP whatever else is evaluated with it.
    ap = torch.cumsum(torch.where(good, precision, 0), 1)[:, -1] / n_good.clamp_min(1).double()
    return first, ap


def summarize_ranks(first: Tensor, ap: Tensor, max_rank: int = 20) -> tuple[np.ndarray, float, int]:
    """(CMC[max_rank], mAP, number of valid queries) from :func:`query_ranks` output.

    Queries with ``first == -1`` are skipped. With no valid query the CMC and mAP are NaN.
    """
    valid = first >= 0
    n_valid = int(valid.sum())
    if n_valid == 0:
        return np.full(max_rank, np.nan), float("nan"), 0
    f = first[valid]
    ranks = torch.arange(max_rank, device=f.device)
    hits = (f[:, None] <= ranks[None, :]).sum(0)
    cmc = hits.double().cpu().numpy() / n_valid
    return cmc, float(ap[valid].double().sum().item() / n_valid), n_valid


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

    Works on numpy arrays or tensors, on the distance matrix's device, chunked over queries
    (``chunk_size`` queries at a time; default keeps a chunk around 0.5 M entries; the C path on
    CPU works row by row and needs no chunks).

    ``max_rank`` larger than the gallery: unlike libraries that shrink ``max_rank`` to the
    gallery size, the CMC keeps length ``max_rank``; ranks beyond the number of candidates hold
    the final value (a query whose candidates are all within the top r has its hit by rank r).

    Raises ValueError when no query has a valid match (nothing to evaluate).
    """
    if max_rank < 1:
        raise ValueError(f"max_rank: expected >= 1, got {max_rank}")
    first, ap = query_ranks(distmat, q_pids, g_pids, q_camids, g_camids, chunk_size)
    cmc, mean_ap, n_valid = summarize_ranks(first, ap, max_rank)
    if n_valid == 0:
        raise ValueError(
            "evaluate_rank: no query has a valid match in the gallery (every same-identity "
            "gallery image is in the query's camera, or the identity is absent): check q_pids/"
            "g_pids and q_camids/g_camids"
        )
    return cmc, mean_ap


# ----------------------------------------------------------------------------- distances
def _check_levels(levels: Any, n: int, name: str, m: int, device: torch.device) -> Tensor:
    lv = _as_tensor(levels, name, device).reshape(-1).long()
    if lv.numel() != n:
        raise ValueError(f"{name}: expected {n} levels (one per row), got {lv.numel()}")
    if n and (int(lv.min()) < 1 or int(lv.max()) > m):
        raise ValueError(
            f"{name}: levels must be in 1..{m} (one per sub-vector of split_sizes), got "
            f"{int(lv.min())}..{int(lv.max())}"
        )
    return lv


def _prefix_sq_norms(x: Tensor, bounds: list[int]) -> Tensor:
    """(N, m) squared norms of the prefixes ending at each sub-vector boundary."""
    sq = x * x
    blocks = [sq[:, a:b].sum(1) for a, b in zip([0, *bounds[:-1]], bounds, strict=True)]
    return torch.cumsum(torch.stack(blocks, 1), 1)


def _block(
    q: Tensor, g: Tensor, q_sq: Tensor, g_sq: Tensor, metric: str, eps: float = 1e-12
) -> Tensor:
    """Distances of prefix blocks ``q`` (n, p) and ``g`` (G, p) with their squared norms."""
    if metric == "euclidean":
        out = torch.addmm(g_sq[None, :], q, g.T, alpha=-2.0)
        return out.add_(q_sq[:, None]).clamp_(min=0)
    qn = q / q_sq.sqrt().clamp_min(eps)[:, None]
    gn = g / g_sq.sqrt().clamp_min(eps)[:, None]
    return torch.mm(qn, gn.T).neg_().add_(1).clamp_(min=0)


def level_distances(
    query: Tensor,
    query_levels: Tensor | Sequence[int],
    gallery: Tensor,
    gallery_levels: Tensor | Sequence[int] | None,
    split_sizes: Sequence[int],
    metric: str = "euclidean",
) -> Tensor:
    """(Q, G) distances over the first ``min(k_q, k_g)`` sub-vectors (paper Eq. 2).

    ``metric``: ``"euclidean"`` (squared, the paper's) or ``"cosine"`` (1 - cos of the prefixes).
    ``gallery_levels=None`` means a full-length (level m) gallery. Queries (and the gallery, when
    its levels vary) are grouped by level, so each group costs one matrix product on its prefix
    and no (Q, G, d) intermediate exists. Output is float32 (float64 if the inputs are), in the
    original query and gallery order, on the inputs' device.
    """
    if metric not in _DISTANCES:
        raise ValueError(f"metric: expected one of {_DISTANCES}, got {metric!r}")
    sizes = [int(s) for s in split_sizes]
    if not sizes or any(s <= 0 for s in sizes):
        raise ValueError(
            f"split_sizes: expected positive sub-vector sizes, got {list(split_sizes)}"
        )
    if query.dim() != 2 or gallery.dim() != 2:
        raise ValueError(
            f"query/gallery: expected 2-D (N, d) embeddings, got {tuple(query.shape)} and "
            f"{tuple(gallery.shape)}"
        )
    d = sum(sizes)
    if query.shape[1] != d or gallery.shape[1] != d:
        raise ValueError(
            f"split_sizes {sizes} sum to {d} but the embeddings have {query.shape[1]} (query) and "
            f"{gallery.shape[1]} (gallery) dimensions"
        )
    dtype = torch.float64 if torch.float64 in (query.dtype, gallery.dtype) else torch.float32
    q = query.detach().to(dtype)
    g = gallery.detach().to(dtype=dtype, device=q.device)
    m = len(sizes)
    num_q, num_g = q.shape[0], g.shape[0]
    q_lv = _check_levels(query_levels, num_q, "query_levels", m, q.device)
    bounds = np.cumsum(sizes).tolist()
    if num_q == 0 or num_g == 0:
        return torch.empty(num_q, num_g, dtype=dtype, device=q.device)
    q_sq = _prefix_sq_norms(q, bounds)
    g_sq = _prefix_sq_norms(g, bounds)
    g_lv = None
    if gallery_levels is not None:
        g_lv = _check_levels(gallery_levels, num_g, "gallery_levels", m, q.device)
        if int(g_lv.min()) >= int(q_lv.max()):
            g_lv = None  # the query's own prefix every time: same as a full-length gallery

    q_levels = torch.unique(q_lv).tolist()
    if g_lv is None:
        if len(q_levels) == 1:
            k = q_levels[0]
            p = bounds[k - 1]
            return _block(q[:, :p], g[:, :p], q_sq[:, k - 1], g_sq[:, k - 1], metric)
        out = torch.empty(num_q, num_g, dtype=dtype, device=q.device)
        for k in q_levels:
            p = bounds[k - 1]
            rows = (q_lv == k).nonzero(as_tuple=True)[0]
            block = _block(q[rows, :p], g[:, :p], q_sq[rows, k - 1], g_sq[:, k - 1], metric)
            out.index_copy_(0, rows, block)
        return out

    # Gallery levels vary: columns sorted by level so each (query level, gallery level) pair is a
    # contiguous column range; every gallery level >= the query's shares the query's prefix.
    g_order = torch.argsort(g_lv, stable=True)
    g_sorted = g[g_order]
    g_sq_sorted = g_sq[g_order]
    g_lv_sorted = g_lv[g_order]
    inverse = torch.empty_like(g_order)
    inverse[g_order] = torch.arange(num_g, device=q.device)
    out = torch.empty(num_q, num_g, dtype=dtype, device=q.device)
    for k in q_levels:
        rows = (q_lv == k).nonzero(as_tuple=True)[0]
        q_rows, q_sq_rows = q[rows], q_sq[rows]
        block = torch.empty(rows.numel(), num_g, dtype=dtype, device=q.device)
        start = 0
        for kb in range(1, k + 1):
            # Columns of gallery level kb < k (prefix kb), then all levels >= k (prefix k).
            end = int((g_lv_sorted <= kb).sum()) if kb < k else num_g
            if end > start:
                p = bounds[kb - 1]
                block[:, start:end] = _block(
                    q_rows[:, :p],
                    g_sorted[start:end, :p],
                    q_sq_rows[:, kb - 1],
                    g_sq_sorted[start:end, kb - 1],
                    metric,
                )
            start = end
        out.index_copy_(0, rows, block[:, inverse])
    return out


# ----------------------------------------------------------------------------- metric
def _stats(values: list[float]) -> tuple[float, float]:
    """Mean and population standard deviation (ddof=0) over trials; std = 0 for one trial."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=0))


class MLRMetric(Metric):
    """Multi-trial MLR re-ID evaluation (paper §V-B), DDP-safe.

    Accumulates zero-padded embeddings with their level, pid, camid, role (0 gallery, 1 MLR
    query, 2 HR reference query), trial (role 1), gallery_trials bitmask (role 0) and a unique
    sample ``index``. ``compute()`` drops duplicated indices (distributed padding), sorts by
    index so 1 and N devices see the same order, and for every trial t scores the role-1 queries
    of trial t (and the role-2 queries) against the gallery images with bit t set.

    Results are fractions: mean over trials and population std (ddof=0, 0 for a single trial) of
    rank-1/5/10/20 (those <= ``max_rank``) and mAP, overall, per query level
    (``level{k}/...``, over the trials that hold level-k queries) and for HR queries (``hr/...``).

    Levels above ``len(split_sizes)`` use the whole vector for distances (a model without varying
    length passes one block) but keep their own ``level{k}`` key.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    _STATES = (
        "embeddings",
        "levels",
        "pids",
        "camids",
        "roles",
        "trials",
        "gallery_trials",
        "indices",
    )

    def __init__(
        self,
        split_sizes: Sequence[int],
        rates: Sequence[float],
        max_rank: int = 20,
        distance: str = "euclidean",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.split_sizes = [int(s) for s in split_sizes]
        if not self.split_sizes or any(s <= 0 for s in self.split_sizes):
            raise ValueError(f"split_sizes: expected positive sizes, got {list(split_sizes)}")
        self.rates = normalize_rates(rates)
        self.num_levels = len(self.rates)
        if max_rank < 1:
            raise ValueError(f"max_rank: expected >= 1, got {max_rank}")
        self.max_rank = int(max_rank)
        if distance not in _DISTANCES:
            raise ValueError(f"distance: expected one of {_DISTANCES}, got {distance!r}")
        self.distance = distance
        for name in self._STATES:
            self.add_state(name, default=[], dist_reduce_fx="cat")

    # -- accumulation
    def update(
        self,
        embeddings: Tensor,
        levels: Tensor,
        pids: Tensor,
        camids: Tensor,
        roles: Tensor,
        trials: Tensor,
        gallery_trials: Tensor,
        indices: Tensor,
    ) -> None:
        """Add one evaluation batch (see the batch keys in CONTRACTS)."""
        if embeddings.dim() != 2 or embeddings.shape[1] != sum(self.split_sizes):
            raise ValueError(
                f"embeddings: expected (N, {sum(self.split_sizes)}) (split_sizes "
                f"{self.split_sizes}), got {tuple(embeddings.shape)}"
            )
        n = embeddings.shape[0]
        ints = {
            "levels": levels,
            "pids": pids,
            "camids": camids,
            "roles": roles,
            "trials": trials,
            "gallery_trials": gallery_trials,
            "indices": indices,
        }
        for name, value in ints.items():
            t = torch.as_tensor(value, device=embeddings.device).reshape(-1).long()
            if t.numel() != n:
                raise ValueError(
                    f"{name}: expected {n} values (one per embedding), got {t.numel()}"
                )
            ints[name] = t
        lv, roles_t = ints["levels"], ints["roles"]
        if n and (int(lv.min()) < 1 or int(lv.max()) > self.num_levels):
            raise ValueError(
                f"levels must be in 1..{self.num_levels} (rates {list(self.rates)}), got "
                f"{int(lv.min())}..{int(lv.max())}"
            )
        if n and not bool(((roles_t >= min(Role)) & (roles_t <= max(Role))).all()):
            raise ValueError("roles must be 0 (gallery), 1 (MLR query) or 2 (HR query)")
        q_trials = ints["trials"][roles_t == Role.QUERY]
        if q_trials.numel() and (int(q_trials.min()) < 0 or int(q_trials.max()) >= MAX_TRIALS):
            raise ValueError(f"trial of an MLR query (role 1) must be in 0..{MAX_TRIALS - 1}")
        self.embeddings.append(embeddings.detach().float())
        for name, t in ints.items():
            getattr(self, name).append(t)

    # -- state access
    def _state(self) -> dict[str, Tensor]:
        """Accumulated states, duplicates (DDP padding) dropped, sorted by sample index.

        The embeddings are not reordered (a copy of the largest state): ``rows`` maps the
        sorted samples to their embedding rows, see :meth:`_emb`.
        """
        raw: dict[str, Tensor] = {}
        for name in self._STATES:
            value = getattr(self, name)
            if isinstance(value, list):
                value = torch.cat(value) if value else torch.zeros(0, device=self.device)
            raw[name] = value
        if raw["embeddings"].numel() == 0:
            d = sum(self.split_sizes)
            raw = {k: torch.zeros(0, dtype=torch.long, device=self.device) for k in self._STATES}
            raw["embeddings"] = torch.zeros(0, d, device=self.device)
            raw["rows"] = torch.zeros(0, dtype=torch.long, device=self.device)
            return raw
        for name in self._STATES[1:]:
            raw[name] = raw[name].long()
        order = torch.argsort(raw["indices"], stable=True)
        idx = raw["indices"][order]
        keep = torch.ones_like(idx, dtype=torch.bool)
        keep[1:] = idx[1:] != idx[:-1]
        if not bool(keep.all()):
            dup = ~keep
            for name in ("pids", "roles", "trials", "levels"):
                v = raw[name][order]
                if not bool((v[1:][dup[1:]] == v[:-1][dup[1:]]).all()):
                    raise ValueError(
                        f"two samples share an index but differ in {name}: the evaluation "
                        "dataset's 'index' must be unique per sample"
                    )
        sel = order[keep]
        state = {name: raw[name][sel] for name in self._STATES[1:]}
        state["embeddings"] = raw["embeddings"]
        state["rows"] = sel
        return state

    @staticmethod
    def _emb(s: dict[str, Tensor], mask: Tensor) -> Tensor:
        """Embeddings of the (sorted) samples selected by ``mask``."""
        return s["embeddings"][s["rows"][mask]]

    def _trials(self, s: dict[str, Tensor]) -> list[int]:
        q_trials = set(s["trials"][s["roles"] == Role.QUERY].tolist())
        bits = 0
        for v in torch.unique(s["gallery_trials"][s["roles"] == Role.GALLERY]).tolist():
            bits |= int(v)
        g_trials = {t for t in range(MAX_TRIALS) if (bits >> t) & 1}
        missing = sorted(q_trials - g_trials)
        if missing and g_trials:
            warnings.warn(
                f"MLRMetric: trials {missing} have queries but no gallery image; they are not "
                "evaluated (check the gallery_trials bitmasks)",
                stacklevel=3,
            )
        if q_trials:
            return sorted(q_trials & g_trials)
        return sorted(g_trials)  # HR queries only

    def _gallery_mask(self, s: dict[str, Tensor], trial: int) -> Tensor:
        return (s["roles"] == Role.GALLERY) & (((s["gallery_trials"] >> trial) & 1) == 1)

    def _dist_levels(self, levels: Tensor) -> Tensor:
        return levels.clamp(max=len(self.split_sizes))

    def _distances(self, s: dict[str, Tensor], q_mask: Tensor, g_mask: Tensor) -> Tensor:
        g_levels = self._dist_levels(s["levels"][g_mask])
        full = len(self.split_sizes)
        return level_distances(
            self._emb(s, q_mask),
            self._dist_levels(s["levels"][q_mask]),
            self._emb(s, g_mask),
            None if bool((g_levels == full).all()) else g_levels,
            self.split_sizes,
            metric=self.distance,
        )

    # -- results
    def compute(self) -> dict[str, Tensor]:
        s = self._state()
        trials = self._trials(s)
        ranks = [r for r in REPORTED_RANKS if r <= self.max_rank]
        per_trial: dict[str, list[float]] = {}

        def add(prefix: str, first: Tensor, ap: Tensor) -> None:
            cmc, mean_ap, n_valid = summarize_ranks(first, ap, self.max_rank)
            if n_valid == 0:
                return
            for r in ranks:
                per_trial.setdefault(f"{prefix}rank{r}", []).append(float(cmc[r - 1]))
            per_trial.setdefault(f"{prefix}mAP", []).append(mean_ap)

        hr_mask = s["roles"] == Role.HR_QUERY
        for t in trials:
            g_mask = self._gallery_mask(s, t)
            q_mask = ((s["roles"] == Role.QUERY) & (s["trials"] == t)) | hr_mask
            if not bool(g_mask.any()) or not bool(q_mask.any()):
                continue
            dist = self._distances(s, q_mask, g_mask)
            first, ap = query_ranks(
                dist, s["pids"][q_mask], s["pids"][g_mask], s["camids"][q_mask], s["camids"][g_mask]
            )
            role = s["roles"][q_mask]
            level = s["levels"][q_mask]
            mlr = role == Role.QUERY
            if bool(mlr.any()):
                add("", first[mlr], ap[mlr])
                for k in torch.unique(level[mlr]).tolist():
                    sel = mlr & (level == k)
                    add(f"level{k}/", first[sel], ap[sel])
            if bool((role == Role.HR_QUERY).any()):
                add("hr/", first[role == Role.HR_QUERY], ap[role == Role.HR_QUERY])

        if not per_trial:
            warnings.warn(
                "MLRMetric: nothing to evaluate (no query with a valid match in any trial's "
                "gallery); returning NaN",
                stacklevel=2,
            )
            per_trial = {f"rank{r}": [float("nan")] for r in ranks}
            per_trial["mAP"] = [float("nan")]
        results: dict[str, Tensor] = {}
        for key in sorted(per_trial, key=lambda k: (k.count("/"), k)):
            mean, std = _stats(per_trial[key])
            results[key] = torch.tensor(mean, dtype=torch.float32, device=self.device)
            results[f"{key}_std"] = torch.tensor(std, dtype=torch.float32, device=self.device)
        return results

    @torch.no_grad()
    def rank_lists(
        self, trial: int = 0, topk: int = 10, roles: Sequence[int] = (1,)
    ) -> dict[str, Tensor]:
        """Top-k gallery of each query of ``trial`` (junk removed as in the protocol).

        Returns CPU tensors: ``query_index``, ``query_level``, ``query_pid``, ``query_role`` (n,),
        ``gallery_index`` (n, k) sample indices in rank order, ``matches`` (n, k) same identity,
        ``distances`` (n, k); ``k = min(topk, fewest valid gallery entries of any query)`` so the
        lists are rectangular. Role 1 queries are those of ``trial``; role 2 are all HR queries.
        """
        s = self._state()
        g_mask = self._gallery_mask(s, trial)
        role_sel = torch.zeros_like(g_mask)
        for r in roles:
            if r not in (1, 2):
                raise ValueError(f"roles: expected query roles 1 and/or 2, got {list(roles)}")
            picked = s["roles"] == r
            if r == 1:
                picked &= s["trials"] == trial
            role_sel |= picked
        empty = torch.zeros(0, dtype=torch.long)
        if not bool(g_mask.any()) or not bool(role_sel.any()):
            return {
                "query_index": empty,
                "query_level": empty,
                "query_pid": empty,
                "query_role": empty,
                "gallery_index": empty.reshape(0, 0),
                "matches": empty.reshape(0, 0).bool(),
                "distances": empty.reshape(0, 0).float(),
            }
        dist = self._distances(s, role_sel, g_mask)
        q_pid, q_cam = s["pids"][role_sel], s["camids"][role_sel]
        g_pid, g_cam, g_index = s["pids"][g_mask], s["camids"][g_mask], s["indices"][g_mask]
        junk = (q_pid[:, None] == g_pid[None, :]) & (q_cam[:, None] == g_cam[None, :])
        k = max(0, min(topk, int((~junk).sum(1).min())))
        cols, dists = [], []
        chunk = max(1, _CHUNK_ELEMENTS // max(1, dist.shape[1]))
        for start in range(0, dist.shape[0], chunk):
            d, j = dist[start : start + chunk], junk[start : start + chunk]
            order = torch.sort(d, dim=1, stable=True).indices
            keep = ~j.gather(1, order)
            take = keep & (torch.cumsum(keep.long(), 1) <= k)
            sel = order[take].reshape(d.shape[0], k)
            cols.append(sel)
            dists.append(d.gather(1, sel))
        col = torch.cat(cols)
        return {
            "query_index": s["indices"][role_sel].cpu(),
            "query_level": s["levels"][role_sel].cpu(),
            "query_pid": q_pid.cpu(),
            "query_role": s["roles"][role_sel].cpu(),
            "gallery_index": g_index[col].cpu(),
            "matches": (g_pid[col] == q_pid[:, None]).cpu(),
            "distances": torch.cat(dists).float().cpu(),
        }

    def embeddings_for_tsne(self, trial: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(embeddings, pids, levels) as numpy: trial ``trial``'s queries, the HR queries and the
        trial's gallery — the picture of paper Fig. 5."""
        s = self._state()
        sel = (
            ((s["roles"] == Role.QUERY) & (s["trials"] == trial))
            | (s["roles"] == Role.HR_QUERY)
            | self._gallery_mask(s, trial)
        )
        return (
            self._emb(s, sel).float().cpu().numpy(),
            s["pids"][sel].cpu().numpy(),
            s["levels"][sel].cpu().numpy(),
        )
