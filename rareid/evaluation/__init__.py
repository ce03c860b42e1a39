"""Evaluation: exact CMC/mAP (``rank``), level-aware distances (``distances``), the multi-trial
MLR metric (``mlr``), results tables (``report``) and pictures (``viz``, imported on its own: it
needs OpenCV)."""

from rareid.evaluation.distances import Distance, level_distances
from rareid.evaluation.mlr import MLRMetric
from rareid.evaluation.rank import evaluate_rank, query_ranks, summarize_ranks
from rareid.evaluation.report import format_results_table, results_to_json

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
