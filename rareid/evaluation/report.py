"""Text forms of MLR results: a mean ± std table (terminal or Markdown) and JSON."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from rareid.levels import level_to_rate, normalize_rates

__all__ = ["format_results_table", "results_to_json"]

_COLUMNS = (
    ("rank1", "rank-1"),
    ("rank5", "rank-5"),
    ("rank10", "rank-10"),
    ("rank20", "rank-20"),
    ("mAP", "mAP"),
)
_LEVEL_KEY = re.compile(r"^level(\d+)/")


def _value(value: Any) -> float:
    return float(value.item() if hasattr(value, "item") else value)


def _skipped(results: Mapping[str, Any], prefix: str) -> str:
    """Queries left unscored (no true match in their trial's gallery) of all, over the trials."""
    prefix = prefix.removeprefix("rerank/")  # re-ranking scores the same queries
    if f"{prefix}queries" not in results:
        return "–"
    return f"{int(_value(results[f'{prefix}skipped']))}/{int(_value(results[f'{prefix}queries']))}"


def _fmt_rate(rate: float) -> str:
    return f"{rate:g}"


def _cell(results: Mapping[str, Any], key: str) -> str:
    if key not in results:
        return "–"
    mean = _value(results[key])
    if math.isnan(mean):
        return "n/a"
    std_key = f"{key}_std"
    if std_key not in results:
        return f"{100 * mean:.1f}"
    return f"{100 * mean:.1f} ± {100 * _value(results[std_key]):.1f}"


def format_results_table(
    results: Mapping[str, Any],
    rates: Sequence[float],
    style: Literal["terminal", "markdown"] = "terminal",
) -> str:
    """Results of :class:`rareid.evaluation.MLRMetric` as a table in percent (mean ± std).

    Rows: "all levels", "level k (r=…)" for every level present (highest resolution first),
    and "HR query (r=1)" when ``hr/`` keys exist. Columns: rank-1/5/10/20 and mAP, those present,
    and "skipped" (queries without a true match in their trial's gallery, which are not scored,
    of all queries, summed over the trials) when the results count them. Results with
    ``rerank/`` keys get the same rows again, re-ranked.
    """
    if style not in ("terminal", "markdown"):
        raise ValueError(f"style: expected 'terminal' or 'markdown', got {style!r}")
    ordered = normalize_rates(rates)
    levels = sorted(
        {int(match.group(1)) for key in results if (match := _LEVEL_KEY.match(key))},
        reverse=True,
    )
    rows: list[tuple[str, str]] = [("all levels", "")]
    for level in levels:
        rate = level_to_rate(level, ordered) if 1 <= level <= len(ordered) else float("nan")
        rows.append((f"level {level} (r={_fmt_rate(rate)})", f"level{level}/"))
    if any(key.startswith("hr/") for key in results):
        rows.append(("HR query (r=1)", "hr/"))
    if "rerank/rank1" in results or "rerank/mAP" in results:
        rows += [(f"{name}, re-ranked", f"rerank/{prefix}") for name, prefix in rows]
    columns = [
        (key, title)
        for key, title in _COLUMNS
        if any(f"{prefix}{key}" in results for _, prefix in rows)
    ]
    counted = any(f"{prefix}queries" in results for _, prefix in rows)
    header = ["queries", *(title for _, title in columns), *(["skipped"] if counted else [])]
    body = [
        [
            name,
            *(_cell(results, f"{prefix}{key}") for key, _ in columns),
            *([_skipped(results, prefix)] if counted else []),
        ]
        for name, prefix in rows
    ]
    num_columns = len(header) - 1
    if style == "markdown":
        lines = [
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---"] + ["---:"] * num_columns) + "|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(row[col]) for row in [header, *body]) for col in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest])

    rule = "-" * len(line(header))
    return "\n".join([line(header), rule, *(line(row) for row in body)])


def results_to_json(results: Mapping[str, Any], indent: int = 2, **extra: Any) -> str:
    """Results as JSON (fractions, counts as integers, sorted keys, NaN as null); ``extra`` adds
    fields (e.g. the per-trial query counts, the config)."""
    data: dict[str, Any] = {}
    for key, value in results.items():
        number = value.item() if hasattr(value, "item") else value
        if isinstance(number, float) and math.isnan(number):
            number = None
        data[key] = number
    data.update(extra)
    return json.dumps(data, indent=indent, sort_keys=True, ensure_ascii=False)
