"""Evaluation: exact CMC/mAP (``rank``), level-aware distances (``distances``), the multi-trial
MLR metric (``mlr``), results tables (``report``) and pictures (``viz``, imported on its own: it
needs OpenCV)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rareid.evaluation.distances import Distance, level_distances
    from rareid.evaluation.mlr import MLRMetric
    from rareid.evaluation.rank import evaluate_rank, query_ranks, summarize_ranks
    from rareid.evaluation.report import format_results_table, results_to_json

#: Where each public name lives; imported on first use, so that a distance or a rank does not
#: import torchmetrics (the metric's base class).
_HOMES = {
    "Distance": "distances",
    "level_distances": "distances",
    "MLRMetric": "mlr",
    "evaluate_rank": "rank",
    "query_ranks": "rank",
    "summarize_ranks": "rank",
    "format_results_table": "report",
    "results_to_json": "report",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'rareid.evaluation' has no attribute {name!r}")
    return getattr(importlib.import_module(f"rareid.evaluation.{_HOMES[name]}"), name)


__all__ = [
    "Distance",
    "MLRMetric",
    "evaluate_rank",
    "format_results_table",
    "level_distances",
    "query_ranks",
    "results_to_json",
    "summarize_ranks",
]
