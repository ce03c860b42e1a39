"""Checks of what the Python API is given (levels, batch sizes, query embeddings), so that a
wrong argument is a clear error, not a silently truncated level or a match at index -1."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def integer_levels(
    levels: torch.Tensor | Sequence[int] | int, name: str = "levels"
) -> torch.Tensor:
    """``levels`` as a 1-D long tensor; a fractional, NaN or boolean level is a ``ValueError``
    (``.long()`` would turn 1.7 into level 1 without a word)."""
    values = torch.as_tensor(levels)
    if values.dtype == torch.bool:
        raise ValueError(f"{name}: expected integer levels, got booleans")
    if values.is_floating_point() or values.is_complex():
        finite = torch.isfinite(values)
        whole = finite & (values == torch.round(values.real if values.is_complex() else values))
        if not bool(whole.all()):
            bad = values[~whole].reshape(-1)[:3].tolist()
            raise ValueError(f"{name}: expected whole numbers (1, 2, ...), got {bad}")
    return values.long().reshape(-1)


def positive_batch_size(batch_size: int) -> int:
    """``batch_size`` once it is a positive integer (0 or -1 would embed nothing or loop)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    return batch_size


def finite_queries(queries: torch.Tensor) -> torch.Tensor:
    """``queries`` once every value is finite: a NaN embedding matches nothing (faiss answers
    index -1, torch an arbitrary order)."""
    bad = ~torch.isfinite(queries).all(dim=1) if queries.ndim == 2 else None
    if bad is not None and bool(bad.any()):
        rows = torch.nonzero(bad).reshape(-1)[:5].tolist()
        raise ValueError(
            f"queries: {int(bad.sum())} embedding(s) hold NaN or infinity (rows {rows}): "
            "check the images and the model that embedded them"
        )
    return queries
