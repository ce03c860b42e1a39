"""Refuse numbers and devices that would make every later answer wrong: embeddings holding NaN
or infinite values rank nothing meaningfully and turn every verdict into noise (the weights of
a checkpoint are checked once, by :func:`rareid.deploy.model.inference.load_model`)."""

from __future__ import annotations

import torch


def check_finite_embeddings(embeddings: torch.Tensor, what: str) -> None:
    """ValueError naming ``what`` (a file, or the queries) when an embedding is not finite."""
    finite = torch.isfinite(embeddings).all(dim=1) if embeddings.ndim == 2 else None
    if finite is not None and not bool(finite.all()):
        count = int((~finite).sum())
        raise ValueError(f"{what} holds NaN or infinite values in {count} embedding(s)")


def device_problem(device: str, option: str = "--device") -> str | None:
    """Why ``device`` cannot run here (a CUDA device on a machine without that GPU, or a name
    torch does not know), as the one line a command prints; None when it can."""
    if device == "auto":
        return None
    try:
        chosen = torch.device(device)
    except (RuntimeError, ValueError):
        return f"{option}: {device!r} is not a torch device; pass cpu, cuda, cuda:N or auto"
    if chosen.type != "cuda":
        return None
    if not torch.cuda.is_available():
        return (
            f"{option} {device}: no CUDA GPU is visible on this machine; pass {option} cpu, "
            f"or {option} auto to use a GPU only when there is one"
        )
    count = torch.cuda.device_count()
    if chosen.index is not None and chosen.index >= count:
        return (
            f"{option} {device}: this machine has {count} CUDA GPU(s) (cuda:0..cuda:{count - 1}); "
            f"pass one of them, {option} cpu or {option} auto"
        )
    return None


def resolve_device(device: str) -> str:
    """``auto``: CUDA when available, else the CPU."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
