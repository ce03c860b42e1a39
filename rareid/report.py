"""Text forms of MLR results: a mean ± std table (terminal or Markdown) and JSON."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

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


def _value(x: Any) -> float:
    return float(x.item() if hasattr(x, "item") else x)


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
    results: Mapping[str, Any], rates: Sequence[float], style: str = "terminal"
) -> str:
    """Results of :class:`rareid.metrics.MLRMetric` as a table in percent (mean ± std).

    Rows: "all levels", "level k (r=…)" for every level present (highest resolution first),
    and "HR query (r=1)" when ``hr/`` keys exist. Columns: rank-1/5/10/20 and mAP, those present.
    ``style``: ``"terminal"`` (aligned text) or ``"markdown"``.
    """
    if style not in ("terminal", "markdown"):
        raise ValueError(f"style: expected 'terminal' or 'markdown', got {style!r}")
    ordered = normalize_rates(rates)
    levels = sorted({int(m.group(1)) for k in results if (m := _LEVEL_KEY.match(k))}, reverse=True)
    rows: list[tuple[str, str]] = [("all levels", "")]
    for k in levels:
        rate = level_to_rate(k, ordered) if 1 <= k <= len(ordered) else float("nan")
        rows.append((f"level {k} (r={_fmt_rate(rate)})", f"level{k}/"))
    if any(k.startswith("hr/") for k in results):
        rows.append(("HR query (r=1)", "hr/"))
    columns = [
        (key, title)
        for key, title in _COLUMNS
        if any(f"{prefix}{key}" in results for _, prefix in rows)
    ]
    header = ["queries", *(title for _, title in columns)]
    body = [
        [name, *(_cell(results, f"{prefix}{key}") for key, _ in columns)] for name, prefix in rows
    ]
    if style == "markdown":
        lines = [
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---"] + ["---:"] * len(columns)) + "|",
        ]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))])

    rule = "-" * len(line(header))
    return "\n".join([line(header), rule, *(line(r) for r in body)])


def results_to_json(results: Mapping[str, Any], indent: int = 2, **extra: Any) -> str:
    """Results as JSON (fractions, sorted keys, NaN as null); ``extra`` adds fields (e.g. config)."""
    data: dict[str, Any] = {}
    for key, value in results.items():
        v = _value(value)
        data[key] = None if math.isnan(v) else v
    data.update(extra)
    return json.dumps(data, indent=indent, sort_keys=True, ensure_ascii=False)
