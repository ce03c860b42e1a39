"""Per-level fit curves of training runs: does each prefix objective fit, and when does it plateau?

Reads the ``train/acc_level{k}`` (identity accuracy of level-k training views on their own
prefix) and ``train/align_level{k}`` (an LR view closer to its own HR view than to every other
identity's in the batch) epoch values that ``RAReIDModule`` logs, from each run folder's CSV
metrics, and draws one panel per figure and level, one line per run; prints the last epoch's
values as a table.

    .venv/bin/python benchmarks/fit_curves.py runs/benchmark/rareid-full/seed0 \\
        runs/benchmark/ide-plus-verif/seed0 --out docs/fit_curves.png
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

_KEY = re.compile(r"^train/(acc|align)_level(\d+)$")


def read_curves(run: Path) -> dict[str, dict[int, float]]:
    """``{"acc_level1": {epoch: value}, ...}`` from the ``metrics.csv`` files under ``run``
    (a later file, e.g. of a resumed fit, overrides the epochs it holds; test logs add none)."""
    files = sorted(run.glob("**/metrics.csv"), key=lambda path: path.stat().st_mtime)
    curves: dict[str, dict[int, float]] = {}
    for path in files:
        with path.open() as handle:
            for row in csv.DictReader(handle):
                for key, value in row.items():
                    match = _KEY.match(key or "")
                    if match and value:
                        name = f"{match[1]}_level{match[2]}"
                        curves.setdefault(name, {})[int(row["epoch"])] = float(value)
    if not curves:
        raise FileNotFoundError(f"{run}: no per-level training metrics in any metrics.csv")
    return curves


def plot(runs: dict[str, dict[str, dict[int, float]]], out: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    keys = sorted({key for curves in runs.values() for key in curves})
    figures = [name for name in ("acc", "align") if any(k.startswith(name) for k in keys)]
    levels = sorted({int(k.rsplit("level", 1)[1]) for k in keys})
    figure = Figure(figsize=(3.2 * len(levels), 3.0 * len(figures)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(figures), len(levels), squeeze=False, sharey=True)
    titles = {"acc": "training accuracy", "align": "LR-HR alignment"}
    for row, name in enumerate(figures):
        for column, level in enumerate(levels):
            ax = axes[row][column]
            for label, curves in runs.items():
                points = curves.get(f"{name}_level{level}")
                if points:
                    epochs = sorted(points)
                    ax.plot(epochs, [100 * points[e] for e in epochs], marker=".", label=label)
            if not ax.lines:  # e.g. alignment at level m: HR views have no LR partner
                ax.set_visible(False)
                continue
            ax.set_title(f"{titles[name]}, level {level} (%)", fontsize=9)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (trainer.default_root_dir)")
    parser.add_argument("--out", type=Path, default=Path("fit_curves.png"))
    args = parser.parse_args(argv)
    try:
        runs = {"/".join(run.parts[-3:]): read_curves(run) for run in args.runs}
    except FileNotFoundError as error:
        print(f"fit_curves: error: {error}", file=sys.stderr)
        return 2
    keys = sorted({key for curves in runs.values() for key in curves})
    print("| run (last epoch) | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for label, curves in runs.items():
        cells = [f"{100 * curves[k][max(curves[k])]:.1f}" if curves.get(k) else "–" for k in keys]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print(f"\nchart: {plot(runs, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
