"""Time to accuracy: the training each recipe needs to reach a validation target.

Runs (or, with ``--report-only``, reads) the grid ``conf/grids/time_to_accuracy.yaml``:
each variant is named ``ROW · RECIPE`` (e.g. ``rareid (full) · fast``) and validates on 10
identities held out of the training split after every epoch, logging the training time that
figure cost (``FitClock``: wall seconds, process CPU seconds, optimiser steps). For every row
and seed, the target is ``--fraction`` of the validation score the anchor recipe ends on (the
mean of its last three validations);
each recipe's time to the target is the first validation at or above it. The speed-up is the
anchor's time over the recipe's, in wall and in CPU seconds (CPU seconds stay steady when other
processes share the cores). The fitted (last) checkpoints' test results follow.

    python benchmarks/time_to_accuracy.py --seeds 0
    python benchmarks/time_to_accuracy.py --report-only --grid \
        conf/grids/time_to_accuracy.yaml conf/grids/time_to_accuracy_strong.yaml
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rareid.experiment import load_grid, slugify

SEPARATOR = " · "


@dataclass(frozen=True)
class Curve:
    """One run's validation curve: (training wall s, CPU s, steps, score) per validation."""

    wall: list[float]
    cpu: list[float]
    steps: list[float]
    score: list[float]

    @property
    def plateau(self) -> float:
        """Where the curve ends up: the mean of its last three validations (one validation
        on 10 identities is noisy, so neither its last nor its best value alone)."""
        return statistics.fmean(self.score[-3:])

    def first_at(self, target: float, in_a_row: int = 1) -> int | None:
        """The first validation that starts ``in_a_row`` validations at or above ``target``."""
        above = [value >= target for value in self.score]
        return next(
            (i for i in range(len(above) - in_a_row + 1) if all(above[i : i + in_a_row])), None
        )


def read_curve(run: Path, metric: str) -> Curve | None:
    """The validation curve from the run's CSV log (the newest version folder)."""
    logs = sorted(run.glob("csv/version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:]))
    rows: dict[float, dict[str, str]] = {}
    for log in logs:  # a resumed fit writes a new version: later rows win
        with log.open() as handle:
            for row in csv.DictReader(handle):
                if row.get(f"val/{metric}") and row.get("time/train_s"):
                    rows[float(row["time/steps"])] = row
    if not rows:
        return None
    ordered = [rows[step] for step in sorted(rows)]
    return Curve(
        wall=[float(r["time/train_s"]) for r in ordered],
        cpu=[float(r["time/cpu_s"]) for r in ordered],
        steps=[float(r["time/steps"]) for r in ordered],
        score=[100 * float(r[f"val/{metric}"]) for r in ordered],
    )


def read_test(run: Path) -> dict[str, float]:
    path = run / "results" / "results.json"
    if not path.is_file():
        return {}
    results = json.loads(path.read_text())
    keys = {
        "all-LR rank-1": "rank1",
        "mAP": "mAP",
        "HR rank-1": "hr/rank1",
        "r=4 rank-1": "level1/rank1",
    }
    return {
        label: 100 * float(results[key])
        for label, key in keys.items()
        if isinstance(results.get(key), (int, float))
    }


def _mean_std(values: Sequence[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.fmean(values):.1f} ± {statistics.stdev(values):.1f}"


def _ratio(values: Sequence[float]) -> str:
    if not values:
        return "not reached"
    geometric = math.exp(statistics.fmean(math.log(v) for v in values))
    spread = f" ({min(values):.1f}–{max(values):.1f})" if len(values) > 1 else ""
    return f"{geometric:.2f}×{spread}"


def report(
    runs_root: Path,
    variants: Sequence[str],
    seeds: Sequence[int],
    anchor: str,
    metric: str,
    fraction: float,
    chart: Path | None,
) -> str:
    """The markdown tables (time to target; fitted test results) and the chart."""
    rows: dict[str, list[str]] = {}
    for name in variants:
        row, _, recipe = name.partition(SEPARATOR)
        rows.setdefault(row, []).append(recipe)
    lines = [
        f"Target: {fraction:.0%} of the validation {metric} the `{anchor}` recipe ends on (the "
        f"mean of its last 3 validations), per row and seed; seeds {', '.join(map(str, seeds))}. "
        "Reached at the first validation at or above it, or at the first of two in a row (one "
        "validation on 10 identities is noisy).",
        "",
        "| row | recipe | reached when | runs | wall s to target | CPU s | steps "
        "| speed-up (wall) | speed-up (CPU) | final val |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    tests = [
        "| row | recipe | all-LR rank-1 | mAP | HR rank-1 | r=4 rank-1 | training wall s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    curves: dict[str, dict[int, Curve]] = {}
    for row, recipes in rows.items():
        for recipe in recipes:
            name = f"{row}{SEPARATOR}{recipe}"
            folder = runs_root / slugify(name)
            curves[name] = {
                seed: curve
                for seed in seeds
                if (curve := read_curve(folder / f"seed{seed}", metric)) is not None
            }
        anchor_name = f"{row}{SEPARATOR}{anchor}"
        for recipe in recipes:
            name = f"{row}{SEPARATOR}{recipe}"
            final, total_wall = [], []
            test_rows: dict[str, list[float]] = {}
            for seed, curve in curves[name].items():
                final.append(curve.plateau)
                total_wall.append(curve.wall[-1])
                for label, value in read_test(runs_root / slugify(name) / f"seed{seed}").items():
                    test_rows.setdefault(label, []).append(value)
            for in_a_row, criterion in ((1, "first"), (2, "2 in a row")):
                reached = 0
                walls, cpus, step_counts, speed_wall, speed_cpu = [], [], [], [], []
                for seed, curve in curves[name].items():
                    reference = curves.get(anchor_name, {}).get(seed)
                    if reference is None:
                        continue
                    target = fraction * reference.plateau
                    at = curve.first_at(target, in_a_row)
                    at_anchor = reference.first_at(target, in_a_row)
                    if at is None or at_anchor is None:
                        continue
                    reached += 1
                    walls.append(curve.wall[at])
                    cpus.append(curve.cpu[at])
                    step_counts.append(curve.steps[at])
                    speed_wall.append(reference.wall[at_anchor] / max(curve.wall[at], 1e-9))
                    speed_cpu.append(reference.cpu[at_anchor] / max(curve.cpu[at], 1e-9))
                lines.append(
                    f"| {row} | {recipe} | {criterion} | {reached}/{len(curves[name])} "
                    f"| {_mean_std(walls)} | {_mean_std(cpus)} | {_mean_std(step_counts)} "
                    f"| {_ratio(speed_wall)} | {_ratio(speed_cpu)} | {_mean_std(final)} |"
                )
            tests.append(
                f"| {row} | {recipe} | "
                + " | ".join(
                    _mean_std(test_rows.get(label, []))
                    for label in ("all-LR rank-1", "mAP", "HR rank-1", "r=4 rank-1")
                )
                + f" | {_mean_std(total_wall)} |"
            )
    if chart is not None:
        _plot(curves, rows, metric, chart)
    return "\n".join(
        [
            *lines,
            "",
            "Fitted (last) checkpoints on the test split, % (mean ± std over seeds):",
            "",
            *tests,
        ]
    )


def _plot(
    curves: dict[str, dict[int, Curve]], rows: dict[str, list[str]], metric: str, out: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    recipes = list(dict.fromkeys(recipe for names in rows.values() for recipe in names))
    figure = Figure(figsize=(5.5 * len(rows), 7), layout="constrained")
    grid = figure.subplots(2, len(rows), squeeze=False)
    for column, (row, names) in enumerate(rows.items()):
        for line, (clock, label) in enumerate(
            (("wall", "training wall time (min)"), ("cpu", "training CPU time (min)"))
        ):
            axis = grid[line][column]
            for recipe in names:
                for index, curve in enumerate(curves[f"{row}{SEPARATOR}{recipe}"].values()):
                    axis.plot(
                        [seconds / 60 for seconds in getattr(curve, clock)],
                        curve.score,
                        color=f"C{recipes.index(recipe)}",
                        alpha=0.8,
                        label=recipe if index == 0 else None,
                    )
            axis.set_title(row)
            axis.set_xlabel(label)
            axis.set_ylabel(f"validation {metric} (%)")
            axis.grid(alpha=0.3)
            axis.legend()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--grid",
        type=Path,
        nargs="+",
        default=[Path("conf/grids/time_to_accuracy.yaml")],
        help="grids whose runs share one run folder (the first names the output)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--anchor", default="40 ep step", help="the recipe the target comes from")
    parser.add_argument("--metric", default="mAP", choices=["mAP", "rank1"])
    parser.add_argument("--fraction", type=float, default=0.95)
    parser.add_argument("--report-only", action="store_true", help="read the runs, train nothing")
    parser.add_argument(
        "--out", type=Path, help="chart (default: <grid output>/time_to_accuracy.png)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 < args.fraction <= 1:
        print(f"time_to_accuracy: error: --fraction must be in (0, 1], got {args.fraction}")
        return 2
    grids = [load_grid(path) for path in args.grid]
    if not args.report_only:
        seeds = [str(seed) for seed in args.seeds]
        for path in args.grid:
            command = [sys.executable, "-m", "rareid", "experiment", str(path), "--seeds", *seeds]
            status = subprocess.run(command).returncode
            if status != 0:
                return status
    grid = grids[0]
    names = [variant.name for each in grids for variant in each.variants]
    if not any(name.endswith(f"{SEPARATOR}{args.anchor}") for name in names):
        print(f"time_to_accuracy: error: no variant of {args.grid[0]} ends in '· {args.anchor}'")
        return 2
    chart = args.out or Path(grid.output) / "time_to_accuracy.png"
    runs_root = Path(grid.runs or grid.output)
    text = report(runs_root, names, args.seeds, args.anchor, args.metric, args.fraction, chart)
    print(text)
    (Path(grid.output) / "time_to_accuracy.md").write_text(text + "\n")
    print(f"\nchart: {chart}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
