"""The deploy pieces tracklets reuse, imported in one place: loading a checkpoint, embedding
crops at their levels, and the query level estimator of ``rareid search``."""

from __future__ import annotations

from pathlib import Path

from rareid.deploy import Preprocess, load_model
from rareid.deploy.model.inference import embed_images, file_sha256, read_checkpoint
from rareid.levels import query_level

__all__ = [
    "VERDICT_COLORS",
    "Preprocess",
    "checkpoint_problem",
    "embed_images",
    "file_sha256",
    "load_model",
    "query_level",
    "read_checkpoint",
]

#: Colours of the verdicts on rank sheets (those of ``rareid search``'s sheets).
VERDICT_COLORS = {"same": "tab:green", "different": "tab:red", "uncalibrated": "0.35"}


def checkpoint_problem(path: str | None, option: str = "--ckpt") -> str | None:
    """One line saying why ``path`` is not a checkpoint file, or ``None`` when it is one."""
    if not path:
        return f"{option}: no checkpoint given; pass {option} PATH"
    file = Path(path)
    if file.is_dir():
        return f"{option}: {path!r} is a folder: pass a .ckpt file"
    if not file.is_file():
        return f"{option}: checkpoint {path!r} does not exist"
    return None
