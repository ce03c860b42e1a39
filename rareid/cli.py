"""The ``rareid`` command: LightningCLI (fit/validate/test/predict) plus ``rareid synth``.

``main(args)`` is what the console script runs and what tests call directly.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import timm
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger

from rareid.callbacks.progressive import ProgressiveMaskTraining
from rareid.callbacks.report import EvaluationReport
from rareid.callbacks.writer import EmbeddingWriter
from rareid.data.datamodule import ReIDDataModule
from rareid.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from rareid.models.module import RAReIDModule
from rareid.runtime import cpu_malloc_wanted, keep_freed_memory


def default_loggers(root: str | os.PathLike) -> list[Logger]:
    """CSV metrics (first, so it decides ``trainer.log_dir``) and wandb in offline mode."""
    root = Path(root)
    return [
        CSVLogger(save_dir=root, name="csv"),
        WandbLogger(save_dir=str(root), project="rareid", name=root.name, offline=True),
    ]


def backbone_normalization(name: str, which: str) -> tuple[float, float, float]:
    """``mean`` or ``std`` of a timm backbone's pretrained config (ImageNet's if it has none)."""
    cfg = timm.get_pretrained_cfg(name) if timm.is_model(name) else None
    default = IMAGENET_MEAN if which == "mean" else IMAGENET_STD
    return tuple(getattr(cfg, which, None) or default)


class RAReIDCLI(LightningCLI):
    """LightningCLI with the callbacks rareid needs forced and the shared values linked."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ProgressiveMaskTraining, "progressive")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(EvaluationReport, "report")
        parser.add_lightning_class_args(EmbeddingWriter, "predict_writer")
        parser.set_defaults(
            {
                "checkpoint.filename": "best",
                "checkpoint.monitor": "val/rank1",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                "checkpoint.enable_version_counter": False,
                "trainer.default_root_dir": "runs/default",
            }
        )
        parser.link_arguments(
            "trainer.default_root_dir",
            "checkpoint.dirpath",
            compute_fn=lambda root: str(Path(root or ".") / "checkpoints"),
        )
        parser.link_arguments(
            "trainer.default_root_dir",
            "predict_writer.output_dir",
            compute_fn=lambda root: str(Path(root or ".") / "predictions"),
        )
        parser.link_arguments(
            "trainer.default_root_dir",
            "report.output_dir",
            compute_fn=lambda root: str(Path(root or ".") / "results"),
        )
        # One source of truth for values model and data must agree on.
        parser.link_arguments("data.rates", "model.rates")
        parser.link_arguments("data.input_size", "model.img_size")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        # Images are normalised with the statistics the backbone was trained with.
        for which in ("mean", "std"):
            parser.link_arguments(
                "model.backbone",
                f"data.{which}",
                compute_fn=lambda name, which=which: backbone_normalization(name, which),
            )

    def instantiate_classes(self) -> None:
        """Turn rareid's own configuration errors into a one-line CLI error, not a traceback."""
        try:
            super().instantiate_classes()
        except (ValueError, FileNotFoundError) as error:  # BackboneError is a ValueError
            self._parser(self.subcommand).error(f"{type(error).__name__}: {error}")

    def instantiate_trainer(self, **kwargs: Any):
        trainer_config = self._get(self.config_init, "trainer", default={})
        if trainer_config.get("logger") in (None, True) and "logger" not in kwargs:
            kwargs["logger"] = default_loggers(trainer_config.get("default_root_dir") or ".")
        trainer = super().instantiate_trainer(**kwargs)
        if isinstance(trainer.accelerator, CPUAccelerator) and cpu_malloc_wanted():
            keep_freed_memory()
        return trainer


def synth_main(argv: Sequence[str]) -> Path:
    """``rareid synth``: write the built-in synthetic dataset in the Market-1501 layout.

    A folder that already holds the same dataset (same parameters) is left as it is.
    """
    from rareid.data.synthetic import ensure_synthetic_dataset, write_synthetic_dataset

    parser = argparse.ArgumentParser(
        prog="rareid synth",
        description="Write the procedural synthetic pedestrian dataset (Market-1501 layout).",
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
    return Path(args.out)


def main(args: Sequence[str] | None = None) -> RAReIDCLI | Path | None:
    """Entry point of ``rareid`` / ``python -m rareid``; returns the CLI object for tests."""
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] == "synth":
        return synth_main(argv[1:])
    if argv and argv[0] == "experiment":
        from rareid.experiment import experiment_main

        return experiment_main(argv[1:])
    os.environ.setdefault("WANDB_SILENT", "true")
    return RAReIDCLI(
        RAReIDModule,
        ReIDDataModule,
        args=None if args is None else argv,  # None: LightningCLI reads sys.argv itself
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
    )
