"""The files a grid leaves in its output folder: ``table.md``, ``table.json``, ``chart.png``
and, for a comparison, ``rank_lists.png``."""

from __future__ import annotations

import json
from collections.abc import Sequence

from rareid.experiment.charts import plot_experiment, plot_learning_curves, stack_rank_lists
from rareid.experiment.grid import Grid, slugify
from rareid.experiment.tables import (
    aggregate,
    format_experiment_table,
    paired_differences,
    sanity_check,
    side_by_side,
)


def report(grid: Grid, seeds: Sequence[int]) -> tuple[str, bool]:
    """Write ``table.md``, ``table.json`` and ``chart.png`` under the grid's output folder."""
    columns, table, missing = aggregate(grid, seeds)
    text = format_experiment_table(grid.name, columns, table, seeds)
    if missing:
        text += f"\n\nmissing runs ({len(missing)}): " + ", ".join(missing)
    sane = True
    if grid.sanity is not None and table.get(grid.sanity):
        sane, line = sanity_check(table[grid.sanity], columns)
        text += f"\n\n{grid.sanity}: {line}"
    grid.output.mkdir(parents=True, exist_ok=True)
    if grid.compare is not None:
        baseline, method = grid.compare
        text += "\n\n" + side_by_side(columns, table, baseline, method)
        if len(seeds) > 1:
            text += "\n\n" + paired_differences(columns, table, baseline, method)
        seed = seeds[0]
        stacked = stack_rank_lists(
            *(
                grid.runs_folder / slugify(n) / f"seed{seed}" / "results" / "rank_list.png"
                for n in (baseline, method)
            ),
            (f"{baseline} (seed {seed})", f"{method} (seed {seed})"),
            grid.output / "rank_lists.png",
        )
        if stacked is not None:
            text += f"\n\nrank lists, same queries, {baseline} left, {method} right: {stacked}"
    (grid.output / "table.md").write_text(text + "\n")
    serialisable = {
        row: {
            c: {m: {**vars(cell), "per_seed": dict(cell.per_seed)} for m, cell in cells.items()}
            for c, cells in by_col.items()
        }
        for row, by_col in table.items()
    }
    (grid.output / "table.json").write_text(
        json.dumps({"grid": grid.name, "seeds": list(seeds), "table": serialisable}, indent=1)
    )
    if any(table.values()):
        plot_experiment(grid.name, columns, table, grid.output / "chart.png")
        curve = plot_learning_curves(grid, columns, table, grid.output / "curves.png")
        if curve is not None:
            text += f"\n\nlearning curves: {curve}"
            (grid.output / "table.md").write_text(text + "\n")
    return text, sane
