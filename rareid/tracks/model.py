"""The deploy pieces tracklets reuse, imported in one place: loading a checkpoint, embedding
crops at their levels and the query level estimator of ``rareid search``."""

from __future__ import annotations

from rareid.deploy.arguments import checkpoint_problem
from rareid.deploy.inference import (
    Preprocess,
    embed_images,
    file_sha256,
    load_model,
    read_checkpoint,
)
from rareid.deploy.search import query_level
from rareid.deploy.sheet import VERDICT_COLORS

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
