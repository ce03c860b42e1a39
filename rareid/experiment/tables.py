"""Aggregation of a grid's ``results.json`` files (mean and std over seeds per query level) and
its tables: the markdown table, the sanity check, the side-by-side comparison."""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from rareid.experiment.grid import Grid

METRICS: tuple[str, ...] = ("rank1", "mAP")
_LEVEL_KEY = re.compile(r"^level(\d+)/(\w+)$")


def _run_rates(folder: Path) -> list[float] | None:
    """The model's rates, from the config LightningCLI saved in the run folder (beside the
    first logger's files when a logger is on)."""
    found = [folder / "config.yaml"] if (folder / "config.yaml").is_file() else []
    found += sorted(folder.glob("*/version_*/config.yaml"))
    if not found:
        return None
    config = found[0]
    try:
        saved = yaml.safe_load(config.read_text()) or {}
    except yaml.YAMLError:
        return None
    # The CLI links data.rates to model.rates, so the saved config holds them under data.
    rates = (saved.get("model") or {}).get("rates") or (saved.get("data") or {}).get("rates")
    return [float(r) for r in rates] if rates else None


def query_columns(results: Mapping[str, Any], rates: Sequence[float] | None) -> dict[str, str]:
    """Column label -> key prefix: "HR" (``hr/``), "r=2" (``level3/``)..., "all LR" (``""``)."""
    columns: dict[str, str] = {}
    if any(k.startswith("hr/") for k in results):
        columns["HR"] = "hr/"
    levels = sorted({int(m.group(1)) for k in results if (m := _LEVEL_KEY.match(k))}, reverse=True)
    for level in levels:
        if rates and 1 <= level <= len(rates):
            rate = sorted(rates)[len(rates) - level]
            columns[f"r={rate:g}"] = f"level{level}/"
        else:
            columns[f"level {level}"] = f"level{level}/"
    columns["all LR"] = ""
    return columns


@dataclass(frozen=True)
class Cell:
    """One table cell: mean and std over seeds, the mean trial std, and how many seeds."""

    mean: float
    seed_std: float
    trial_std: float
    seeds: int
    #: ``{seed: value}``: what paired comparisons between rows are computed from.
    per_seed: Mapping[int, float] = field(default_factory=dict)


def _cell(values: Sequence[float], trial_stds: Sequence[float], seeds: Sequence[int] = ()) -> Cell:
    array = np.asarray(values, dtype=np.float64)
    seed_std = float(array.std(ddof=1)) if array.size > 1 else float("nan")
    trial = [t for t in trial_stds if not math.isnan(t)]
    return Cell(
        float(array.mean()),
        seed_std,
        float(np.mean(trial)) if trial else math.nan,
        len(array),
        dict(zip(seeds, (float(v) for v in values), strict=False)),
    )


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)


def aggregate(
    grid: Grid, seeds: Sequence[int]
) -> tuple[list[str], dict[str, dict[str, dict[str, Cell]]], list[str]]:
    """Read every run's ``results.json``.

    Returns (column labels, ``{row: {column: {metric: Cell}}}``, missing runs). Rows follow the
    grid's variants, then its averaged ``rows``; an averaged row's value of one seed is the mean
    over its members that report that column (a naive model reports only its own rate).
    """
    per_run: dict[tuple[str, int], dict[str, Any]] = {}
    rates_seen: list[float] | None = None
    missing = []
    for variant in grid.variants:
        for seed in seeds:
            folder = grid.runs_folder / variant.slug / f"seed{seed}"
            path = folder / "results" / "results.json"
            if not path.is_file():
                missing.append(f"{variant.name} seed {seed}")
                continue
            per_run[(variant.name, seed)] = json.loads(path.read_text())
            rates_seen = (
                rates_seen
                or _run_rates(folder)
                or _run_rates(
                    grid.runs_folder
                    / grid.variant(variant.fit_from or variant.name).slug
                    / f"seed{seed}"
                )
            )
    columns: dict[str, str] = {}
    for results in per_run.values():
        for label, prefix in query_columns(results, rates_seen).items():
            columns.setdefault(label, prefix)
    ordered = _order_columns(columns)
    table: dict[str, dict[str, dict[str, Cell]]] = {}
    groups = [(v.name, [v.name]) for v in grid.variants]
    groups += [(row["name"], list(row["mean_of"])) for row in grid.rows]
    for row_name, members in groups:
        row: dict[str, dict[str, Cell]] = {}
        for label in ordered:
            prefix = columns[label]
            row[label] = {}
            for metric in METRICS:
                values, trial_stds, found_seeds = [], [], []
                for seed in seeds:
                    key = f"{prefix}{metric}"
                    found = [
                        per_run[(member, seed)]
                        for member in members
                        if per_run.get((member, seed), {}).get(key) is not None
                    ]
                    if not found:
                        continue
                    found_seeds.append(seed)
                    values.append(np.mean([_number(results[key]) for results in found]))
                    trial_stds.append(
                        float(np.mean([_number(results.get(f"{key}_std")) for results in found]))
                    )
                if values:
                    row[label][metric] = _cell(values, trial_stds, found_seeds)
        table[row_name] = row
    return ordered, table, missing


def _order_columns(columns: Mapping[str, str]) -> list[str]:
    def key(label: str) -> tuple[int, float]:
        if label == "HR":
            return (0, 0.0)
        if label == "all LR":
            return (2, 0.0)
        number = float(re.findall(r"[\d.]+", label)[0])
        # "r=2" before "r=4" (resolution falls); "level 4" before "level 1" (level m is HR)
        return (1, number if label.startswith("r=") else -number)

    return sorted(columns, key=key)


def _format_cell(cell: Cell | None) -> str:
    if cell is None:
        return "–"
    spread = _spread(cell)
    if math.isnan(spread):
        return f"{100 * cell.mean:.1f}"
    return f"{100 * cell.mean:.1f} ± {100 * spread:.1f}"


def _spread(cell: Cell) -> float:
    """The std over seeds; with a single seed, the std over that run's trials."""
    return cell.trial_std if cell.seeds == 1 else cell.seed_std


def format_experiment_table(
    grid_name: str,
    columns: Sequence[str],
    table: Mapping[str, Mapping[str, Mapping[str, Cell]]],
    seeds: Sequence[int],
) -> str:
    """Markdown: one row per variant, rank-1 and mAP per query level, mean ± std over seeds."""
    header = ["variant"]
    for label in columns:
        header += [f"{label} rank-1", f"{label} mAP"]
    lines = [
        f"**{grid_name}** — %, mean ± std over seeds {list(seeds)}"
        + (" (one seed: ± is the std over its evaluation trials)" if len(seeds) == 1 else ""),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for name, row in table.items():
        cells = [name]
        for label in columns:
            cells += [_format_cell(row.get(label, {}).get(metric)) for metric in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sanity_check(row: Mapping[str, Mapping[str, Cell]], columns: Sequence[str]) -> tuple[bool, str]:
    """Does resolution matter? Rank-1 must fall at every step from HR queries to the lowest
    level, and the HR-to-lowest drop must exceed twice the larger of the seed and trial spreads.
    """
    levels = [label for label in columns if label != "all LR" and "rank1" in row.get(label, {})]
    if len(levels) < 2 or levels[0] != "HR":
        return False, "sanity check: needs HR-query and LR-level rank-1 results"
    means = [row[label]["rank1"].mean for label in levels]
    monotone = all(higher > lower for higher, lower in itertools.pairwise(means))
    first, last = row[levels[0]]["rank1"], row[levels[-1]]["rank1"]
    spreads = [cell.seed_std for cell in (first, last)] + [cell.trial_std for cell in (first, last)]
    spread = max((value for value in spreads if not math.isnan(value)), default=0.0)
    drop = first.mean - last.mean
    passed = monotone and drop > 2 * spread
    path = " > ".join(
        f"{label} {100 * mean:.1f}" for label, mean in zip(levels, means, strict=True)
    )
    verdict = "PASS" if passed else "FAIL"
    return passed, (
        f"sanity check ({verdict}): rank-1 {path}; drop HR -> {levels[-1]} = "
        f"{100 * drop:.1f} points vs 2 x spread = {200 * spread:.1f} "
        f"({'monotone' if monotone else 'NOT monotone'})"
    )


def side_by_side(
    columns: Sequence[str],
    table: Mapping[str, Mapping[str, Mapping[str, Cell]]],
    baseline: str,
    method: str,
) -> str:
    """Per query level: the baseline, the method and the difference (rank-1 / mAP, %), and
    whether the rank-1 gain at the lowest level and over all LR queries exceeds twice the
    spread."""
    lines = [
        f"| queries | {baseline} rank-1 / mAP | {method} rank-1 / mAP | difference |",
        "|---|---:|---:|---:|",
    ]
    for label in columns:
        pair = [table.get(name, {}).get(label, {}) for name in (baseline, method)]
        if not all("rank1" in cells and "mAP" in cells for cells in pair):
            continue
        base, ours = ((cells["rank1"].mean, cells["mAP"].mean) for cells in pair)
        lines.append(
            f"| {label} | {100 * base[0]:.1f} / {100 * base[1]:.1f} | "
            f"{100 * ours[0]:.1f} / {100 * ours[1]:.1f} | "
            f"{100 * (ours[0] - base[0]):+.1f} / {100 * (ours[1] - base[1]):+.1f} |"
        )
    levels = [label for label in columns if label not in ("HR", "all LR")]
    verdicts = [(label, label) for label in levels[-1:]] + [("all LR", "LR queries")]
    said = False
    for label, wording in verdicts:
        pair = [table.get(name, {}).get(label, {}).get("rank1") for name in (baseline, method)]
        if not all(pair):
            continue
        gain = pair[1].mean - pair[0].mean
        spreads = [_spread(cell) for cell in pair]
        spread = max((value for value in spreads if not math.isnan(value)), default=0.0)
        if gain > 2 * spread:
            verdict = "a clear gain"
        elif gain < -2 * spread:
            verdict = "a clear loss"
        else:
            verdict = "within the spread (no clear difference)"
        lines += [""] if not said else []
        said = True
        lines.append(
            f"{wording}, rank-1: {method} - {baseline} = {100 * gain:+.1f} points; "
            f"2 x spread = {200 * spread:.1f} -> {verdict}"
        )
    return "\n".join(lines)


#: Two-sided 95 % quantiles of Student's t by degrees of freedom (beyond 30: the normal's).
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip


def paired_interval(differences: Sequence[float]) -> tuple[float, float, float]:
    """Mean of paired per-seed differences and its 95 % confidence interval (Student's t)."""
    array = np.asarray(differences, dtype=np.float64)
    mean = float(array.mean())
    if array.size < 2:
        return mean, math.nan, math.nan
    dof = array.size - 1
    half = (_T95[dof - 1] if dof <= len(_T95) else 1.96) * array.std(ddof=1) / math.sqrt(array.size)
    return mean, mean - half, mean + half


def paired_differences(
    columns: Sequence[str],
    table: Mapping[str, Mapping[str, Mapping[str, Cell]]],
    baseline: str,
    method: str,
) -> str:
    """Per query level, ``method - baseline`` over the seeds both ran (paired), with its 95 %
    confidence interval: "measurably better" only where the interval excludes zero."""
    lines = [
        f"Paired over seeds, {method} - {baseline} (points, mean [95 % CI]; seeds ahead):",
        "",
        "| queries | rank-1 | mAP | verdict (rank-1; mAP) |",
        "|---|---:|---:|---|",
    ]
    for label in columns:
        cells, verdicts = [], []
        for metric in METRICS:
            pair = [table.get(name, {}).get(label, {}).get(metric) for name in (baseline, method)]
            if not all(pair):
                cells.append("–")
                continue
            base, ours = pair[0].per_seed, pair[1].per_seed
            shared = sorted(set(base) & set(ours))
            differences = [100 * (ours[seed] - base[seed]) for seed in shared]
            if not differences:
                cells.append("–")
                continue
            mean, low, high = paired_interval(differences)
            ahead = sum(difference > 0 for difference in differences)
            interval = "" if math.isnan(low) else f" [{low:+.1f}, {high:+.1f}]"
            cells.append(f"{mean:+.1f}{interval}; {ahead}/{len(differences)}")
            if not math.isnan(low):
                verdicts.append(
                    "measurably better"
                    if low > 0
                    else "measurably worse"
                    if high < 0
                    else "not measurably different"
                )
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {'; '.join(verdicts) or '–'} |")
    return "\n".join(lines)
