"""The parser of the Lightning subcommands: a bad option as one line, the help's epilog as
written, and the options rareid adds to Lightning's (the forced callbacks, the folders linked to
the run folder, the values model and data must agree on)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, NoReturn

from jsonargparse import DefaultHelpFormatter, Namespace
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser

from rareid.callbacks.progressive import ProgressiveMaskTraining
from rareid.callbacks.report import EvaluationReport
from rareid.callbacks.writer import EmbeddingWriter
from rareid.data.transforms import backbone_statistics
from rareid.runs import checkpoint_dir


class RAReIDArgumentParser(LightningArgumentParser):
    """Lightning's parser, reporting a bad or missing option as one ``error:`` line.

    jsonargparse prints the whole usage (over a hundred lines for ``fit``) before the
    error; the line names the option and points to ``--help`` instead.
    """

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        prog = parser.prog.replace(" [options]", "")
        text = " ".join(str(message).split())
        print(f"{prog}: error: {text} (see {prog} --help)", file=sys.stderr)
        self.exit(2)


def add_rareid_arguments(parser: LightningArgumentParser) -> None:
    """``--overwrite``, the forced callbacks and their defaults, and the linked values."""
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="fit: delete the checkpoints an earlier run left in the run folder and start again",
    )
    parser.add_lightning_class_args(ProgressiveMaskTraining, "progressive")
    parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
    parser.add_lightning_class_args(EvaluationReport, "report")
    parser.add_lightning_class_args(EmbeddingWriter, "predict_writer")
    parser.set_defaults(
        {
            "checkpoint.filename": "best",
            "checkpoint.monitor": "val/rank1",
            "checkpoint.mode": "max",
            # last.ckpt comes from its own callback, every epoch (see instantiate_trainer).
            "checkpoint.save_last": False,
            "checkpoint.enable_version_counter": False,
            "trainer.default_root_dir": "runs/default",
        }
    )
    parser.link_arguments(
        "trainer.default_root_dir",
        "checkpoint.dirpath",
        compute_fn=lambda root: str(checkpoint_dir(root or ".")),
    )
    for target, folder in (("predict_writer", "predictions"), ("report", "results")):
        parser.link_arguments(
            "trainer.default_root_dir",
            f"{target}.output_dir",
            compute_fn=lambda root, folder=folder: str(Path(root or ".") / folder),
        )
    # One source of truth for values model and data must agree on.
    parser.link_arguments("data.rates", "model.rates")
    parser.link_arguments("data.input_size", "model.img_size")
    parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
    # Images are normalised with the statistics the backbone was trained with.
    for at, which in enumerate(("mean", "std")):
        parser.link_arguments(
            "model.backbone",
            f"data.{which}",
            compute_fn=lambda name, at=at: backbone_statistics(name)[at],
        )


def explicit_options(
    parser: LightningArgumentParser, args: Any, subcommand: str, section: str
) -> set[str] | None:
    """The ``section`` options given on the command line or in a config file, whatever
    their value (``None`` if that cannot be told)."""
    if isinstance(args, (dict, Namespace)):
        return None
    try:
        explicit = parser.parse_args(args, defaults=False)
    except (SystemExit, Exception):  # the first parse passed; fall back if this one fails
        return None
    options = explicit.get(f"{subcommand}.{section}")
    return set(options.keys()) if options is not None else set()


class HelpFormatter(DefaultHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """jsonargparse's formatter that keeps the epilog's line breaks."""
