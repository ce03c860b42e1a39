"""``rareid experiment``: the command line over the grid, plan, runner and report modules."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rareid.commands.arguments import cannot_write
from rareid.experiment.grid import Grid, GridError, load_grid, parse_sets
from rareid.experiment.plan import Run, plan_runs, runs_made_otherwise
from rareid.experiment.preflight import preflight
from rareid.experiment.report import report
from rareid.experiment.runners import LocalRunner, Runner, _duration, warm_start_folder
from rareid.runs import OneLineArgumentParser

#: Options of the submitit launcher, refused with ``--launcher local``.
SUBMITIT_OPTIONS = ("partition", "gpus_per_run", "cpus_per_run", "timeout_min", "cluster")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="rareid experiment",
        description="Train and test a grid of variants over seeds; print and save the table.",
    )
    parser.add_argument("grid", help="grid file, e.g. conf/grids/table4.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (default: 0)")
    parser.add_argument(
        "--base",
        nargs="+",
        metavar="CONFIG",
        help="replace the grid's base configs, e.g. conf/paper.yaml conf/market1501/resnet50.yaml "
        "for the paper's setting (default: the grid's CPU benchmark)",
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
    launch = parser.add_argument_group("launcher")
    launch.add_argument(
        "--launcher",
        choices=("local", "submitit"),
        default="local",
        help="local: one run after the other here (default); submitit: each fit and its tests "
        "a SLURM job",
    )
    launch.add_argument("--partition", help="submitit: SLURM partition")
    launch.add_argument("--gpus-per-run", type=int, help="submitit: GPUs per job (default 1)")
    launch.add_argument("--cpus-per-run", type=int, help="submitit: CPUs per job (default 8)")
    launch.add_argument(
        "--timeout-min", type=int, help="submitit: time limit per job, minutes (default 1440)"
    )
    launch.add_argument(
        "--cluster",
        choices=("slurm", "local"),
        help="submitit: slurm (default), or local processes through submitit's local executor",
    )
    return parser


def make_runner(args: argparse.Namespace, grid: Grid) -> Runner:
    """The runner the launcher options name; a GridError names a misplaced option."""
    given = [name for name in SUBMITIT_OPTIONS if getattr(args, name) is not None]
    if args.launcher == "local":
        if given:
            option = "--" + given[0].replace("_", "-")
            raise GridError(f"{option}: only with --launcher submitit")
        return LocalRunner()
    from rareid.experiment.cluster import SubmititRunner

    for name in ("gpus_per_run", "cpus_per_run", "timeout_min"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "gpus_per_run" else 1):
            option = "--" + name.replace("_", "-")
            raise GridError(f"{option}: expected a positive number, got {value}")
    options = {name: getattr(args, name) for name in given}
    runner = SubmititRunner(folder=grid.output / "submitit", name=f"rareid-{grid.name}", **options)
    try:
        runner.check()
    except (ImportError, RuntimeError) as error:
        raise GridError(str(error)) from None
    return runner


def load_and_check(args: argparse.Namespace) -> tuple[Grid, dict]:
    """The grid file and the ``--set`` overrides, checked against the options."""
    grid = load_grid(args.grid)
    sets = parse_sets(args.sets)
    for config in [*(args.base or grid.base)]:
        if not Path(config).is_file():
            raise GridError(f"--base / base: config file {config} does not exist")
    if args.only:
        unknown = [n for n in args.only if n not in {v.name for v in grid.variants}]
        if unknown:
            raise GridError(f"--only: unknown variants {unknown}")
    return grid, sets


def adapt_grid(grid: Grid, args: argparse.Namespace) -> Grid:
    """The grid as ``--base``, ``--out`` and ``--only`` change it."""
    if args.base:
        # Another setting (e.g. a paper config): its own folders, its own weights (the paper
        # configs start from ImageNet), none of the CPU benchmark's data or warm start.
        label = "-".join(Path(args.base[-1]).with_suffix("").as_posix().split("/")[-2:])
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
    return grid


def print_commands(runs: Sequence[Run]) -> None:
    """``--dry-run``: every fit once, then every test."""
    fits: set[Path] = set()
    for run in runs:
        if run.fit_folder not in fits:
            fits.add(run.fit_folder)
            print(shlex.join(["rareid", "fit", *run.fit_args]))
        print(shlex.join(["rareid", "test", *run.test_args]))


def main(argv: Sequence[str]) -> int:
    """``rareid experiment GRID.yaml --seeds 0 1 2``: run a grid and print its table."""
    parser = build_parser()
    args = parser.parse_args(list(argv))
    try:
        grid, sets = load_and_check(args)
        grid = adapt_grid(grid, args)
        runner = make_runner(args, grid)
    except GridError as error:
        parser.error(str(error))
    base = list(args.base or grid.base)
    seeds = list(dict.fromkeys(args.seeds))
    failed: list[Run] = []
    problems = [] if args.report_only else preflight(grid, base, sets)
    for problem in problems:
        print(f"{parser.prog}: error: {args.grid}: {problem}", file=sys.stderr)
    if problems:
        return 2
    if not args.report_only:
        if not args.dry_run:
            from rareid.data.synthetic import ensure_synthetic_dataset

            # The grid's data; the warm start's own identity pool is made only when the warm
            # start is trained (train_warm_start), not when a trained or shipped one is reused.
            if grid.synth:
                print(ensure_synthetic_dataset(**{"progress": False, **grid.synth}), flush=True)
        warm = None
        if grid.warm_start is not None and not args.dry_run:
            try:
                warm = runner.warm_start(grid, base, sets)
            except RuntimeError as error:
                print(error, file=sys.stderr)
                return 1
        elif grid.warm_start is not None:
            warm = warm_start_folder(grid, base, sets) / "backbone.pth"
        runs = plan_runs(grid, seeds, base, sets, warm)
        stale = runs_made_otherwise(runs)
        if stale:
            parser.error(
                f"{stale[0].folder} holds results of other arguments than this grid's "
                f"{stale[0].variant.name!r} ({len(stale)} such runs; see its run.json): give "
                "the variant another name, or remove those folders to re-run them"
            )
        if args.dry_run:
            print_commands(runs)
            return 0
        started = time.perf_counter()
        failed = runner.run(runs)
        print(f"grid {grid.name}: {len(runs)} runs, {_duration(time.perf_counter() - started)}")
        if failed:
            print(f"{len(failed)} runs failed; re-run the same command to retry them", flush=True)
    try:
        text, _ = report(grid, seeds)
    except OSError as error:
        parser.error(cannot_write(f"{args.grid}: output", grid.output, error))
    print("\n" + text)
    print(f"\ntable: {grid.output / 'table.md'}\nchart: {grid.output / 'chart.png'}")
    return 1 if failed else 0
