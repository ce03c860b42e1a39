"""The ``rareid`` command: LightningCLI (fit/validate/test/predict) plus helper subcommands.

``main(args)`` is what the console script runs: it returns the exit status (0 success,
2 usage error, 1 failure). ``run_cli(args)`` returns the CLI object, for tests and notebooks.
A helper subcommand is one entry of ``HELPER_COMMANDS``: a function ``argv -> exit status``
whose docstring's first line is its help.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rareid.lightning_cli import RAReIDCLI

#: Names that live in :mod:`rareid.lightning_cli` and are still reachable here, imported on
#: first use so that ``import rareid.cli`` stays free of Lightning and timm.
_LIGHTNING_NAMES = (
    "RAReIDCLI",
    "LIGHTNING_INFO_LOGGER",
    "EVALUATION_SUBCOMMANDS",
    "backbone_normalization",
    "default_loggers",
    "quiet_third_party_noise",
    "raised_by_rareid",
)


def __getattr__(name: str) -> Any:
    if name in _LIGHTNING_NAMES:
        return getattr(importlib.import_module("rareid.lightning_cli"), name)
    raise AttributeError(f"module 'rareid.cli' has no attribute {name!r}")


def synth_main(argv: Sequence[str]) -> int:
    """Write the built-in synthetic dataset in the Market-1501 layout.

    A folder that already holds the same dataset (same parameters) is left as it is.
    """
    from rareid.data.synthetic import ensure_synthetic_dataset, write_synthetic_dataset
    from rareid.runs import OneLineArgumentParser

    parser = OneLineArgumentParser(
        prog="rareid synth",
        description="Write the procedural synthetic pedestrian dataset (Market-1501 layout).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", required=True, help="output folder, e.g. data/synthetic")
    parser.add_argument("--identities", type=int, default=100, help="number of identities")
    parser.add_argument("--cameras", type=int, default=4, help="number of cameras")
    parser.add_argument("--seed", type=int, default=0, help="seed: same seed, same bytes")
    parser.add_argument("--force", action="store_true", help="rewrite even if up to date")
    args = parser.parse_args(list(argv))
    write = write_synthetic_dataset if args.force else ensure_synthetic_dataset
    try:
        summary = write(args.out, identities=args.identities, cameras=args.cameras, seed=args.seed)
    except (ValueError, FileExistsError) as error:
        parser.error(str(error))
    print(summary)
    return 0


def aggregate_main(argv: Sequence[str]) -> int:
    """Mean and spread over splits and over trials of several rareid test results."""
    from rareid.aggregate import main as run

    return run(argv, prog="rareid aggregate")


def _imported_on_call(target: str, summary: str) -> Callable[[Sequence[str]], int]:
    """A helper subcommand whose module (``module:function``) is imported only when it runs,
    so that ``rareid synth`` and ``rareid --help`` stay fast."""
    module_name, function_name = target.split(":")

    def run(argv: Sequence[str]) -> int:
        return getattr(importlib.import_module(module_name), function_name)(argv)

    run.__doc__ = summary
    return run


#: Helper subcommands beside Lightning's fit/validate/test/predict: name -> main(argv) -> status.
HELPER_COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "synth": synth_main,
    "splits": _imported_on_call(
        "rareid.data.splits_command:splits_main",
        "Write a config's exact evaluation set (ids, query files, rates, gallery draws) to a file.",
    ),
    "aggregate": aggregate_main,
    "index": _imported_on_call(
        "rareid.deploy.index_command:index_main",
        "Embed a folder of HR gallery crops into an index file.",
    ),
    "search": _imported_on_call(
        "rareid.deploy.search_command:search_main",
        "Rank an index's gallery for low-resolution query crops (CSV, JSON, rank sheet).",
    ),
    "calibrate": _imported_on_call(
        "rareid.deploy.calibrate_command:calibrate_main",
        "Same-person thresholds per query level from the validation split (ROC, FAR).",
    ),
    "export": _imported_on_call(
        "rareid.deploy.export_command:export_main",
        "Export a checkpoint to ONNX (checked against PyTorch).",
    ),
    "experiment": _imported_on_call(
        "rareid.experiment:experiment_main",
        "Train and test a grid of variants x seeds; one table, JSON and bar chart.",
    ),
}


def helper_commands_help() -> str:
    """The helper subcommands and their one-line help, for ``rareid --help``."""
    width = max(len(name) for name in HELPER_COMMANDS)
    lines = [
        f"  {name:<{width}}  {(function.__doc__ or '').strip().splitlines()[0]}"
        for name, function in HELPER_COMMANDS.items()
    ]
    return "helper subcommands (rareid NAME --help for their options):\n" + "\n".join(lines)


def run_cli(args: Sequence[str] | None = None) -> RAReIDCLI:
    """Run a Lightning subcommand and return the CLI object (``args=None``: ``sys.argv``)."""
    from rareid.data.datamodule import ReIDDataModule
    from rareid.lightning_cli import (
        RAReIDArgumentParser,
        RAReIDCLI,
        _HelpFormatter,
        quiet_third_party_noise,
    )
    from rareid.models.module import RAReIDModule
    from rareid.trainer import RAReIDTrainer

    os.environ.setdefault("WANDB_SILENT", "true")
    quiet_third_party_noise()
    return RAReIDCLI(
        RAReIDModule,
        ReIDDataModule,
        trainer_class=RAReIDTrainer,
        args=None if args is None else list(args),  # None: LightningCLI reads sys.argv itself
        parser_class=RAReIDArgumentParser,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
        parser_kwargs={
            "prog": "rareid",
            "epilog": helper_commands_help(),
            "formatter_class": _HelpFormatter,
        },
    )


#: Lightning's subcommands and their one-line help (``rareid SUBCOMMAND --help``: all options).
LIGHTNING_SUBCOMMANDS: dict[str, str] = {
    "fit": "Train a model (config files with --config, options as --section.name VALUE).",
    "validate": "Evaluate a checkpoint on the validation split.",
    "test": "Evaluate a checkpoint on the test split (the MLR protocol of the paper).",
    "predict": "Write query and gallery embeddings of a checkpoint.",
}


def top_level_help() -> str:
    """``rareid --help``, written without building the Lightning parser (which imports Lightning
    and timm), so that it answers at once."""
    names = ",".join([*LIGHTNING_SUBCOMMANDS, *HELPER_COMMANDS])
    width = max(len(name) for name in [*LIGHTNING_SUBCOMMANDS, *HELPER_COMMANDS])
    lines = [f"  {name:<{width}}  {summary}" for name, summary in LIGHTNING_SUBCOMMANDS.items()]
    return (
        f"usage: rareid [-h] {{{names}}} ...\n\n"
        "Resolution-adaptive representations for cross-resolution person re-ID.\n\n"
        "Lightning subcommands (rareid SUBCOMMAND --help for their options):\n"
        + "\n".join(lines)
        + "\n\n"
        + helper_commands_help()
        + "\n"
    )


def exit_status(stop: SystemExit) -> int:
    """The status a ``SystemExit`` stands for; a message is printed and counts as failure."""
    if stop.code is None:
        return 0
    if isinstance(stop.code, int):
        return stop.code
    print(stop.code, file=sys.stderr)
    return 1


def main(args: Sequence[str] | None = None) -> int:
    """Entry point of ``rareid`` / ``python -m rareid``: 0 success, 2 usage error, 1 failure."""
    argv = list(sys.argv[1:] if args is None else args)
    try:
        if argv and argv[0] in HELPER_COMMANDS:
            return int(HELPER_COMMANDS[argv[0]](argv[1:]))
        if argv[:1] in (["-h"], ["--help"]):
            print(top_level_help(), end="")
            return 0
        if not argv or not (argv[0].startswith("-") or argv[0] in LIGHTNING_SUBCOMMANDS):
            got = f"unknown subcommand {argv[0]!r}" if argv else "no subcommand given"
            print(f"rareid: error: {got}; see rareid --help", file=sys.stderr)
            return 2
        run_cli(None if args is None else argv)
    except SystemExit as stop:
        return exit_status(stop)
    return 0
