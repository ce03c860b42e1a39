"""The ``rareid`` command: LightningCLI (fit/validate/test/predict) plus helper subcommands.

``main(args)`` is what the console script runs: it returns the exit status (0 success,
2 usage error, 1 failure). ``run_cli(args)`` returns the CLI object, for tests and notebooks.
A helper subcommand is one entry of ``HELPER_COMMANDS``: a module of :mod:`rareid.commands`
and its one-line help.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rareid.lightning_cli import RAReIDCLI

#: Helper subcommands beside Lightning's fit/validate/test/predict: name -> (module of
#: :mod:`rareid.commands` with ``main(argv) -> int``, one-line help). A module is imported only
#: when its command runs, so that ``rareid --help`` stays fast.
HELPER_COMMANDS: dict[str, tuple[str, str]] = {
    "synth": (
        "rareid.commands.synth",
        "Write the built-in synthetic dataset in the Market-1501 layout.",
    ),
    "splits": (
        "rareid.commands.splits",
        "Write a config's exact evaluation set (ids, query files, rates, gallery draws) to a file.",
    ),
    "aggregate": (
        "rareid.commands.aggregate",
        "Mean and spread over splits and over trials of several rareid test results.",
    ),
    "index": ("rareid.commands.index", "Embed a folder of HR gallery crops into an index file."),
    "search": (
        "rareid.commands.search",
        "Rank an index's gallery for low-resolution query crops (CSV, JSON, rank sheet).",
    ),
    "calibrate": (
        "rareid.commands.calibrate",
        "Same-person thresholds per query level from the validation split (ROC, FAR).",
    ),
    "serve": (
        "rareid.commands.serve",
        "Search an index from a browser (upload crops) or over HTTP (/api/search, OpenAPI).",
    ),
    "export": ("rareid.commands.export", "Export a checkpoint to ONNX (checked against PyTorch)."),
    "tracks": (
        "rareid.commands.tracks",
        "Tracklets from video: index, search, link people across cameras; evaluate, synth.",
    ),
    "experiment": (
        "rareid.commands.experiment",
        "Train and test a grid of variants x seeds; one table, JSON and bar chart.",
    ),
}


def run_helper(name: str, argv: Sequence[str]) -> int:
    """Run the helper subcommand ``name`` with ``argv`` and return its exit status."""
    module_name, _ = HELPER_COMMANDS[name]
    return int(importlib.import_module(module_name).main(argv))


def helper_commands_help() -> str:
    """The helper subcommands and their one-line help, for ``rareid --help``."""
    width = max(len(name) for name in HELPER_COMMANDS)
    lines = [f"  {name:<{width}}  {summary}" for name, (_, summary) in HELPER_COMMANDS.items()]
    return "helper subcommands (rareid NAME --help for their options):\n" + "\n".join(lines)


def run_cli(args: Sequence[str] | None = None) -> RAReIDCLI:
    """Run a Lightning subcommand and return the CLI object (``args=None``: ``sys.argv``)."""
    from rareid.data.datamodule import ReIDDataModule
    from rareid.lightning_cli import RAReIDCLI
    from rareid.lightning_parser import HelpFormatter, RAReIDArgumentParser
    from rareid.models.module import RAReIDModule
    from rareid.runtime import quiet_third_party_noise
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
            "formatter_class": HelpFormatter,
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
            return run_helper(argv[0], argv[1:])
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
