"""``rareid experiment``: train and test a grid of variants over seeds, then one table and one chart.

Why: the paper's ablation tables compare variants of one recipe. A grid file names the shared
config layers (``base``) and, per variant, extra config files and ``key: value`` overrides. Every
(variant, seed) run is a ``rareid fit`` then a ``rareid test`` in its own folder
``<output>/<variant>/seed<k>``, each in a subprocess (a crash leaves the others intact). A run
whose ``results/results.json`` exists is skipped, and an interrupted fit resumes from its
``last.ckpt``, so re-running the same command after an interruption finishes the grid. The
aggregate reads every ``results.json``: mean ± std over seeds per query level, rank-1 and mAP.

Grid file (YAML)::

    name: table4
    base: [conf/benchmark/synthetic.yaml]    # replaced by --base (e.g. a paper config)
    output: runs/experiments/table4           # table.md, table.json, chart.png
    runs: runs/experiments/table4             # optional (default: output): the (variant, seed)
                                              # folders; grids that name the same folder share
                                              # the runs of same-named variants
    checkpoint: last                          # last | best (best needs held-out validation)
    sanity: ide_verif                         # optional: check that this variant's rank-1
                                              # falls from HR queries to the lowest level
    synth: {out: data/benchmark, identities: 200}   # optional: write the data first
    warm_start:                               # optional: one backbone, trained once, shared
      configs: [conf/benchmark/warm_start.yaml]
      overrides: {trainer.max_epochs: 8}
      synth: {out: data/pretrain, identities: 400, seed: 1000}  # optional: its own data
      out: runs/experiments/warm_start        # shared by the grids that name the same folder
    variants:
      - name: full
      - name: w/o mask
        configs: [conf/ablation/no_masks.yaml]
        overrides: {model.use_masks: false}
      - name: r=3 nearest
        fit_from: full                        # test another variant's checkpoint
        test_overrides: {data.eval_rates: [3], data.level_policy: nearest}
    rows:                                     # optional: averaged rows (Table III's naive)
      - name: naive (avg of r=2,3,4)
        mean_of: [naive r=2, naive r=3, naive r=4]
    compare: [IDE + Verif, full]              # optional: side by side with the difference,
                                              # and both rank lists in one picture
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import yaml

__all__ = [
    "Grid",
    "Variant",
    "aggregate",
    "experiment_main",
    "format_experiment_table",
    "load_grid",
    "plot_experiment",
    "sanity_check",
]

Checkpoint = Literal["last", "best"]
METRICS: tuple[str, ...] = ("rank1", "mAP")
_LEVEL_KEY = re.compile(r"^level(\d+)/(\w+)$")


class GridError(ValueError):
    """A grid file that cannot be run; the message names the file and what to change."""


def _curve_point(entry: Mapping[str, Any], path: Path) -> tuple[str | None, float | None]:
    """A variant's ``series`` and ``budget`` (both or neither): a point of a learning curve."""
    series, budget = entry.get("series"), entry.get("budget")
    if series is None and budget is None:
        return None, None
    if (
        not isinstance(series, str)
        or isinstance(budget, bool)
        or not isinstance(budget, (int, float))
    ):
        raise GridError(
            f"{path}: variant {entry['name']!r} needs both `series` (a curve name) and "
            f"`budget` (a number), got series={series!r}, budget={budget!r}"
        )
    return series, float(budget)


@dataclass(frozen=True)
class Variant:
    """One row of a table: config layers and overrides on top of the grid's base."""

    name: str
    configs: tuple[str, ...] = ()
    overrides: Mapping[str, Any] = field(default_factory=dict)
    fit_from: str | None = None
    test_overrides: Mapping[str, Any] = field(default_factory=dict)
    series: str | None = None  # a learning-curve grid: the curve this variant is a point of
    budget: float | None = None  # ... and its x (e.g. training epochs)

    @property
    def slug(self) -> str:
        """Folder name of the variant (its name, filesystem-safe)."""
        return slugify(self.name)


@dataclass(frozen=True)
class Grid:
    """A parsed grid file (see the module docstring)."""

    name: str
    path: Path
    base: tuple[str, ...]
    output: Path
    variants: tuple[Variant, ...]
    checkpoint: Checkpoint = "last"
    sanity: str | None = None
    warm_start: Mapping[str, Any] | None = None
    rows: tuple[Mapping[str, Any], ...] = ()
    synth: Mapping[str, Any] = field(default_factory=dict)
    compare: tuple[str, str] | None = None
    runs: Path | None = None

    @property
    def runs_folder(self) -> Path:
        """Where the (variant, seed) runs live: ``runs``, else ``output``."""
        return self.output if self.runs is None else self.runs

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise KeyError(name)


def slugify(name: str) -> str:
    """``"w/o val*"`` -> ``"w-o-val-star"``: stable, readable folder names."""
    text = name.replace("*", "-star").replace("+", "-plus-").replace("=", "")
    return re.sub(r"[^A-Za-z0-9._]+", "-", text).strip("-").lower() or "variant"


def _as_list(value: Any, what: str, path: Path) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise GridError(f"{path}: {what} must be a config file path or a list of them, got {value!r}")


def _as_mapping(value: Any, what: str, path: Path) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise GridError(f"{path}: {what} must be a mapping of dotted keys to values")
    return {str(k): v for k, v in value.items()}


def load_grid(path: str | os.PathLike) -> Grid:
    """Read and check a grid file; every problem is a :class:`GridError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise GridError(f"grid file {path} does not exist (see conf/experiments/ for examples)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise GridError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("variants"), list):
        raise GridError(f"{path}: expected a mapping with a list of `variants`")
    known = {
        "name",
        "base",
        "output",
        "checkpoint",
        "sanity",
        "warm_start",
        "variants",
        "rows",
        "synth",
        "compare",
        "runs",
    }
    unknown = sorted(set(data) - known)
    if unknown:
        raise GridError(f"{path}: unknown keys {unknown}; known keys are {sorted(known)}")
    variants = []
    for entry in data["variants"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise GridError(f"{path}: every variant needs a `name`, got {entry!r}")
        extra = sorted(
            set(entry)
            - {"name", "configs", "overrides", "fit_from", "test_overrides", "series", "budget"}
        )
        if extra:
            raise GridError(f"{path}: variant {entry['name']!r} has unknown keys {extra}")
        variants.append(
            Variant(
                name=entry["name"],
                configs=_as_list(entry.get("configs"), "configs", path),
                overrides=_as_mapping(entry.get("overrides"), "overrides", path),
                fit_from=entry.get("fit_from"),
                test_overrides=_as_mapping(entry.get("test_overrides"), "test_overrides", path),
                series=_curve_point(entry, path)[0],
                budget=_curve_point(entry, path)[1],
            )
        )
    names = [v.name for v in variants]
    slugs = [v.slug for v in variants]
    if len(set(slugs)) != len(slugs):
        raise GridError(f"{path}: variant names must be distinct (as folder names): {names}")
    for variant in variants:
        if variant.fit_from is not None and variant.fit_from not in names:
            raise GridError(
                f"{path}: variant {variant.name!r} has fit_from {variant.fit_from!r}, "
                f"which is not a variant name ({names})"
            )
        if variant.fit_from is not None and (variant.configs or variant.overrides):
            raise GridError(
                f"{path}: variant {variant.name!r} tests another fit (fit_from); give it only "
                "test_overrides"
            )
    checkpoint = data.get("checkpoint", "last")
    if checkpoint not in ("last", "best"):
        raise GridError(f"{path}: checkpoint must be 'last' or 'best', got {checkpoint!r}")
    rows = tuple(data.get("rows") or ())
    for row in rows:
        members = row.get("mean_of") if isinstance(row, dict) else None
        if not isinstance(row.get("name") if isinstance(row, dict) else None, str) or not (
            isinstance(members, list) and members and all(m in names for m in members)
        ):
            raise GridError(
                f"{path}: every entry of `rows` needs a `name` and `mean_of`, a list of "
                f"variant names ({names}); got {row!r}"
            )
    sanity = data.get("sanity")
    if sanity is not None and sanity not in names:
        raise GridError(f"{path}: sanity {sanity!r} is not a variant name ({names})")
    warm_start = data.get("warm_start")
    if warm_start is not None:
        if not isinstance(warm_start, dict) or not warm_start.get("configs"):
            raise GridError(f"{path}: warm_start needs `configs` (and optionally `overrides`)")
        warm_synth = _as_mapping(warm_start.get("synth"), "warm_start.synth", path)
        if warm_synth and "out" not in warm_synth:
            raise GridError(f"{path}: warm_start.synth needs `out` and rareid synth options")
        warm_start = {
            "configs": _as_list(warm_start["configs"], "warm_start.configs", path),
            "overrides": _as_mapping(warm_start.get("overrides"), "warm_start.overrides", path),
            "out": warm_start.get("out"),
            "synth": warm_synth,
        }
    compare = data.get("compare")
    if compare is not None and not (
        isinstance(compare, list) and len(compare) == 2 and all(c in names for c in compare)
    ):
        raise GridError(
            f"{path}: compare must name two variants, baseline first ({names}); got {compare!r}"
        )
    synth = _as_mapping(data.get("synth"), "synth", path)
    if synth and "out" not in synth:
        raise GridError(f"{path}: synth needs `out` (the dataset folder) and rareid synth options")
    return Grid(
        name=str(data.get("name") or path.stem),
        path=path,
        base=_as_list(data.get("base"), "base", path),
        output=Path(data.get("output") or Path("runs/experiments") / path.stem),
        variants=tuple(variants),
        checkpoint=checkpoint,
        sanity=sanity,
        warm_start=warm_start,
        rows=rows,
        synth=synth,
        compare=tuple(compare) if compare else None,
        runs=Path(data["runs"]) if data.get("runs") else None,
    )


# ------------------------------------------------------------------------------ commands


def _cli_value(value: Any) -> str:
    """A YAML flow value as jsonargparse reads it on the command line (``[8]``, ``false``)."""
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").strip()


def override_args(overrides: Mapping[str, Any]) -> list[str]:
    return [f"--{key}={_cli_value(value)}" for key, value in overrides.items()]


def parse_sets(items: Sequence[str]) -> dict[str, Any]:
    """``["trainer.max_epochs=1"]`` -> ``{"trainer.max_epochs": 1}`` (values read as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise GridError(f"--set {item!r}: expected KEY=VALUE, e.g. trainer.max_epochs=1")
        out[key] = yaml.safe_load(value)
    return out


@dataclass(frozen=True)
class Run:
    """One (variant, seed): where it lives and the two commands that produce it."""

    variant: Variant
    seed: int
    folder: Path
    fit_folder: Path  # another variant's folder when the variant tests that fit
    fit_args: tuple[str, ...]
    test_args: tuple[str, ...]

    @property
    def results(self) -> Path:
        return self.folder / "results" / "results.json"

    @property
    def fit_done(self) -> Path:
        return self.fit_folder / "fit.done"

    @property
    def record(self) -> Path:
        """The arguments the run's results came from (``run.json``)."""
        return self.folder / "run.json"

    def arguments(self) -> dict[str, list[str]]:
        return {"fit": list(self.fit_args), "test": list(self.test_args)}


def runs_made_otherwise(runs: Sequence[Run]) -> list[Run]:
    """Runs whose results exist but came from other arguments (``run.json`` differs): another
    grid sharing the runs folder used the same variant name for another recipe."""
    return [
        run
        for run in runs
        if run.results.is_file()
        and run.record.is_file()
        and json.loads(run.record.read_text()) != run.arguments()
    ]


def plan_runs(
    grid: Grid,
    seeds: Sequence[int],
    base: Sequence[str] | None = None,
    sets: Mapping[str, Any] | None = None,
    warm_weights: Path | None = None,
) -> list[Run]:
    """Every (variant, seed) run with its ``rareid fit`` / ``rareid test`` arguments."""
    layers = list(grid.base if base is None else base)
    common = dict(sets or {})
    if warm_weights is not None:
        common["model.weights_path"] = str(warm_weights)
    runs = []
    for seed in seeds:
        for variant in grid.variants:
            source = grid.variant(variant.fit_from) if variant.fit_from else variant
            fit_folder = grid.runs_folder / source.slug / f"seed{seed}"
            folder = grid.runs_folder / variant.slug / f"seed{seed}"
            args = [f"--config={c}" for c in [*layers, *source.configs]]
            args += override_args({**source.overrides, **common})
            args += [f"--seed_everything={seed}", f"--data.seed={seed}"]
            fit_args = [*args, f"--trainer.default_root_dir={fit_folder}"]
            ckpt = fit_folder / "checkpoints" / f"{grid.checkpoint}.ckpt"
            test_args = [
                *args,
                *override_args(variant.test_overrides),
                f"--trainer.default_root_dir={folder}",
                f"--ckpt_path={ckpt}",
            ]
            runs.append(Run(variant, seed, folder, fit_folder, tuple(fit_args), tuple(test_args)))
    return runs


def _rareid(subcommand: str, args: Sequence[str], log: Path) -> int:
    """Run ``python -m rareid SUBCOMMAND ARGS`` with its output appended to ``log``."""
    command = [sys.executable, "-m", "rareid", subcommand, *args]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as handle:
        handle.write(f"\n$ {shlex.join(command[1:])}\n")
        handle.flush()
        env = {**os.environ, "WANDB_SILENT": "true"}
        return subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=env).returncode


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _fit(run: Run, log: Path) -> int:
    """Fit, resuming from ``last.ckpt`` when an earlier fit was interrupted."""
    last = run.fit_folder / "checkpoints" / "last.ckpt"
    resume = [f"--ckpt_path={last}"] if last.is_file() else []
    status = _rareid("fit", [*run.fit_args, *resume], log)
    if status == 0:
        run.fit_done.write_text("ok\n")
    return status


def train_warm_start(grid: Grid, base: Sequence[str], sets: Mapping[str, Any]) -> Path:
    """Fit the grid's warm-start recipe once and save its backbone as a timm state dict."""
    assert grid.warm_start is not None
    folder = Path(grid.warm_start.get("out") or grid.output / "warm_start")
    weights = folder / "backbone.pth"
    if weights.is_file():
        print(f"warm start: {weights} exists, reused", flush=True)
        return weights
    args = [f"--config={c}" for c in [*base, *grid.warm_start["configs"]]]
    args += override_args({**grid.warm_start["overrides"], **sets})
    args += [f"--trainer.default_root_dir={folder}"]
    print(f"warm start: training the shared backbone in {folder} ...", flush=True)
    start = time.perf_counter()
    log = folder / "log.txt"
    last = folder / "checkpoints" / "last.ckpt"
    resume = [f"--ckpt_path={last}"] if last.is_file() else []
    if _rareid("fit", [*args, *resume], log) != 0:
        raise RuntimeError(f"warm start fit failed; see {log}:\n{_tail(log)}")
    save_backbone(last, weights)
    print(f"warm start: {weights} ({_duration(time.perf_counter() - start)})", flush=True)
    return weights


def save_backbone(checkpoint: Path, out: Path) -> Path:
    """The timm backbone's weights of a rareid checkpoint, loadable by ``model.weights_path``."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    prefix = "backbone.model."
    backbone = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not backbone:
        raise ValueError(f"{checkpoint} holds no backbone weights ({prefix}*)")
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(backbone, out)
    return out


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def execute(runs: Sequence[Run]) -> list[Run]:
    """Fit and test every run that has no results yet; returns the runs that failed."""
    failed: list[Run] = []
    todo = [run for run in runs if not run.results.is_file()]
    done_before = len(runs) - len(todo)
    if done_before:
        print(f"{done_before} of {len(runs)} runs already have results (skipped)", flush=True)
    start = time.perf_counter()
    for position, run in enumerate(todo, 1):
        label = f"[{position}/{len(todo)}] {run.variant.name} · seed {run.seed}"
        log = run.folder / "log.txt"
        run_start = time.perf_counter()
        if not run.fit_done.is_file():
            print(f"{label}: fit ...", flush=True)
            if _fit(run, log) != 0:
                print(f"{label}: fit FAILED, see {log}\n{_tail(log)}", flush=True)
                failed.append(run)
                continue
        print(f"{label}: test ...", flush=True)
        if _rareid("test", run.test_args, log) != 0 or not run.results.is_file():
            print(f"{label}: test FAILED, see {log}\n{_tail(log)}", flush=True)
            failed.append(run)
            continue
        run.record.write_text(json.dumps(run.arguments(), indent=1) + "\n")
        elapsed = time.perf_counter() - start
        left = elapsed / position * (len(todo) - position)
        print(
            f"{label}: done in {_duration(time.perf_counter() - run_start)} "
            f"(elapsed {_duration(elapsed)}, about {_duration(left)} left)",
            flush=True,
        )
    return failed


# ------------------------------------------------------------------------------ aggregation


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


def _cell(values: Sequence[float], trial_stds: Sequence[float]) -> Cell:
    array = np.asarray(values, dtype=np.float64)
    seed_std = float(array.std(ddof=1)) if array.size > 1 else float("nan")
    trial = [t for t in trial_stds if not math.isnan(t)]
    return Cell(
        float(array.mean()), seed_std, float(np.mean(trial)) if trial else math.nan, len(array)
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
                values, trial_stds = [], []
                for seed in seeds:
                    key = f"{prefix}{metric}"
                    found = [
                        per_run[(member, seed)]
                        for member in members
                        if per_run.get((member, seed), {}).get(key) is not None
                    ]
                    if not found:
                        continue
                    values.append(np.mean([_number(results[key]) for results in found]))
                    trial_stds.append(
                        float(np.mean([_number(results.get(f"{key}_std")) for results in found]))
                    )
                if values:
                    row[label][metric] = _cell(values, trial_stds)
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


def side_by_side(
    columns: Sequence[str],
    table: Mapping[str, Mapping[str, Mapping[str, Cell]]],
    baseline: str,
    method: str,
) -> str:
    """Per query level: the baseline, the method and the difference (rank-1 / mAP, %), and
    whether the mean LR-query rank-1 gain exceeds twice the spread."""
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
    lr = [table.get(name, {}).get("all LR", {}).get("rank1") for name in (baseline, method)]
    if all(lr):
        gain = lr[1].mean - lr[0].mean
        spreads = [_spread(cell) for cell in lr]
        spread = max((value for value in spreads if not math.isnan(value)), default=0.0)
        if gain > 2 * spread:
            verdict = "a clear gain"
        elif gain < -2 * spread:
            verdict = "a clear loss"
        else:
            verdict = "within the spread (no clear difference)"
        lines += [
            "",
            f"LR queries, rank-1: {method} - {baseline} = {100 * gain:+.1f} points; "
            f"2 x spread = {200 * spread:.1f} -> {verdict}",
        ]
    return "\n".join(lines)


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
        row: {c: {m: vars(cell) for m, cell in cells.items()} for c, cells in by_col.items()}
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


# ------------------------------------------------------------------------------ command line


def experiment_main(argv: Sequence[str]) -> int:
    """``rareid experiment GRID.yaml --seeds 0 1 2``: run a grid and print its table."""
    parser = argparse.ArgumentParser(
        prog="rareid experiment",
        description="Train and test a grid of variants over seeds; print and save the table.",
    )
    parser.add_argument("grid", help="grid file, e.g. conf/experiments/table4.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (default: 0)")
    parser.add_argument(
        "--base",
        nargs="+",
        metavar="CONFIG",
        help="replace the grid's base configs, e.g. conf/market1501/resnet50.yaml for the "
        "paper's setting (default: the grid's CPU benchmark)",
    )
    parser.add_argument("--out", help="output folder (default: the grid's `output`)")
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override for every run, e.g. --set trainer.max_epochs=1 (repeatable)",
    )
    parser.add_argument("--only", nargs="+", metavar="VARIANT", help="run only these variants")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--report-only", action="store_true", help="aggregate existing results")
    args = parser.parse_args(list(argv))
    try:
        grid = load_grid(args.grid)
        sets = parse_sets(args.sets)
        for config in [*(args.base or grid.base)]:
            if not Path(config).is_file():
                raise GridError(f"--base / base: config file {config} does not exist")
        if args.only:
            unknown = [n for n in args.only if n not in {v.name for v in grid.variants}]
            if unknown:
                raise GridError(f"--only: unknown variants {unknown}")
    except GridError as error:
        parser.error(str(error))
    if args.base:
        # Another setting (e.g. a paper config): its own folders, its own weights (the paper
        # configs start from ImageNet), none of the CPU benchmark's data or warm start.
        label = "-".join(Path(config).with_suffix("").as_posix().split("/")[-2:])
        output = (
            Path(args.out) if args.out else grid.output.with_name(f"{grid.output.name}-{label}")
        )
        if grid.warm_start is not None or grid.synth:
            print(
                f"--base: the grid's synthetic data and warm start are not used; runs in {output}"
            )
        grid = Grid(
            **{**vars(grid), "output": output, "runs": None, "warm_start": None, "synth": {}}
        )
    elif args.out:
        grid = Grid(**{**vars(grid), "output": Path(args.out), "runs": None})
    if args.only:
        keep = set(args.only) | {
            v.fit_from for v in grid.variants if v.name in args.only and v.fit_from
        }
        grid = Grid(**{**vars(grid), "variants": tuple(v for v in grid.variants if v.name in keep)})
    base = list(args.base or grid.base)
    seeds = list(dict.fromkeys(args.seeds))
    failed: list[Run] = []
    if not args.report_only:
        if not args.dry_run:
            from rareid.data.synthetic import ensure_synthetic_dataset

            # The grid's data, then the warm start's own (separate) identity pool.
            for synth in (grid.synth, (grid.warm_start or {}).get("synth")):
                if synth:
                    print(ensure_synthetic_dataset(**{"progress": False, **synth}), flush=True)
        warm = None
        if grid.warm_start is not None and not args.dry_run:
            try:
                warm = train_warm_start(grid, base, sets)
            except RuntimeError as error:
                print(error, file=sys.stderr)
                return 1
        elif grid.warm_start is not None:
            warm = Path(grid.warm_start.get("out") or grid.output / "warm_start") / "backbone.pth"
        runs = plan_runs(grid, seeds, base, sets, warm)
        stale = runs_made_otherwise(runs)
        if stale:
            parser.error(
                f"{stale[0].folder} holds results of other arguments than this grid's "
                f"{stale[0].variant.name!r} ({len(stale)} such runs; see its run.json): give "
                "the variant another name, or remove those folders to re-run them"
            )
        if args.dry_run:
            fits: set[Path] = set()
            for run in runs:
                if run.fit_folder not in fits:
                    fits.add(run.fit_folder)
                    print(shlex.join(["rareid", "fit", *run.fit_args]))
                print(shlex.join(["rareid", "test", *run.test_args]))
            return 0
        started = time.perf_counter()
        failed = execute(runs)
        print(f"grid {grid.name}: {len(runs)} runs, {_duration(time.perf_counter() - started)}")
        if failed:
            print(f"{len(failed)} runs failed; re-run the same command to retry them", flush=True)
    text, _ = report(grid, seeds)
    print("\n" + text)
    print(f"\ntable: {grid.output / 'table.md'}\nchart: {grid.output / 'chart.png'}")
    return 1 if failed else 0
