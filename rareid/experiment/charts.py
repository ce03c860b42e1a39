"""Pictures of a grid: the grouped bar chart per query level and the two rank-list sheets side
by side."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from rareid.experiment.grid import Grid, Variant
from rareid.experiment.tables import METRICS, Cell, _spread


def plot_experiment(
    grid_name: str,
    columns: Sequence[str],
    table: Mapping[str, Mapping[str, Mapping[str, Cell]]],
    out: Path,
) -> Path:
    """Grouped bars per query level (one bar per variant), rank-1 and mAP, seed std as error."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(max(6.0, 1.4 * len(columns) * 2), 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(METRICS), sharey=True)
    names = list(table)
    width = 0.8 / max(1, len(names))
    x = np.arange(len(columns))
    for ax, metric in zip(np.atleast_1d(axes), METRICS, strict=True):
        for index, name in enumerate(names):
            cells = [table[name].get(c, {}).get(metric) for c in columns]
            heights = [100 * c.mean if c else 0.0 for c in cells]
            errors = [
                0.0 if c is None or math.isnan(_spread(c)) else 100 * _spread(c) for c in cells
            ]
            ax.bar(
                x + (index - (len(names) - 1) / 2) * width,
                heights,
                width,
                yerr=errors,
                capsize=2,
                label=name,
            )
        ax.set_xticks(x, list(columns))
        ax.set_title(f"{grid_name}: {'rank-1' if metric == 'rank1' else metric} (%)")
        ax.grid(axis="y", alpha=0.3)
    np.atleast_1d(axes)[0].legend(fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    return out


def stack_rank_lists(left: Path, right: Path, titles: tuple[str, str], out: Path) -> Path | None:
    """The two runs' rank-list pictures side by side under their titles.

    Both runs draw the same queries (same data seed, same evaluation set), which is checked on
    the pixels of the query column; a mismatch is said in the picture's title.
    """
    import cv2

    pictures = [cv2.imread(str(p)) for p in (left, right)]
    if any(p is None for p in pictures):
        return None
    height = max(p.shape[0] for p in pictures)
    padded = [
        cv2.copyMakeBorder(p, 0, height - p.shape[0], 0, 0, cv2.BORDER_CONSTANT, value=(255,) * 3)
        for p in pictures
    ]
    # the leftmost 64 px: the margin and the query cell of the default rank-list layout
    same = np.array_equal(padded[0][:, :64], padded[1][:, :64])
    header = 34
    blocks = []
    for picture, title in zip(padded, titles, strict=True):
        block = np.full((height + header, picture.shape[1], 3), 255, np.uint8)
        block[header:] = picture
        text = title if same else f"{title} (queries differ!)"
        cv2.putText(block, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 2)
        blocks.append(block)
    gap = np.full((height + header, 24, 3), 255, np.uint8)
    cv2.imwrite(str(out), np.concatenate([blocks[0], gap, blocks[1]], axis=1))
    return out


def plot_learning_curves(
    grid: Grid,
    columns: Sequence[str],
    table: Mapping[str, Mapping[str, Mapping[str, Cell]]],
    out: Path,
) -> Path | None:
    """Rank-1 against training budget, one line per ``series`` and one panel per LR query
    column ("all LR" first), seed std as error bars. ``None`` when no variant has a budget."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    curves: dict[str, list[Variant]] = {}
    for variant in grid.variants:
        if variant.series is not None and table.get(variant.name):
            curves.setdefault(variant.series, []).append(variant)
    panels = [c for c in ["all LR", *columns] if c != "HR" and c in columns]
    panels = list(dict.fromkeys(panels))
    if not curves or not panels:
        return None
    figure = Figure(figsize=(3.6 * len(panels), 3.6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = np.atleast_1d(figure.subplots(1, len(panels), sharey=True))
    for ax, column in zip(axes, panels, strict=True):
        for series, points in curves.items():
            points = sorted(points, key=lambda v: v.budget or 0.0)
            cells = [table[v.name].get(column, {}).get("rank1") for v in points]
            kept = [(v.budget, c) for v, c in zip(points, cells, strict=True) if c is not None]
            if not kept:
                continue
            ax.errorbar(
                [b for b, _ in kept],
                [100 * c.mean for _, c in kept],
                yerr=[0.0 if math.isnan(c.seed_std) else 100 * c.seed_std for _, c in kept],
                marker="o",
                capsize=3,
                label=series,
            )
        ax.set_title(f"{column} queries: rank-1 (%)")
        ax.set_xlabel("training budget (epochs)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle(f"{grid.name} (error bars: std over seeds)")
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    return out
