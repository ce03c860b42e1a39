"""Refuse numbers that would make every later answer wrong: a model or embeddings holding NaN
or infinite values rank nothing meaningfully and turn every verdict into noise."""

from __future__ import annotations

import os

import torch
from torch import nn


def nonfinite_weights(model: nn.Module) -> list[str]:
    """Names of the floating-point parameters and buffers of ``model`` holding NaN or inf."""
    return [
        name
        for name, tensor in model.state_dict().items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]


def check_finite_model(model: nn.Module, path: str | os.PathLike) -> None:
    """ValueError naming the checkpoint file when a weight of ``model`` is not finite."""
    bad = nonfinite_weights(model)
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise ValueError(
            f"checkpoint {str(path)!r} holds NaN or infinite weights ({shown}): it comes from a "
            "diverged training; use an earlier checkpoint"
        )


def check_finite_embeddings(embeddings: torch.Tensor, what: str) -> None:
    """ValueError naming ``what`` (a file, or the queries) when an embedding is not finite."""
    finite = torch.isfinite(embeddings).all(dim=1) if embeddings.ndim == 2 else None
    if finite is not None and not bool(finite.all()):
        count = int((~finite).sum())
        raise ValueError(f"{what} holds NaN or infinite values in {count} embedding(s)")
