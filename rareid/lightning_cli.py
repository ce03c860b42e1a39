"""The Lightning half of the ``rareid`` command: ``RAReIDCLI`` (fit/validate/test/predict).

Kept apart from :mod:`rareid.cli` so that the helper subcommands and ``--help`` never import
Lightning or timm: :func:`rareid.cli.run_cli` imports this module only for a Lightning subcommand.
The policies it applies live beside what they govern, each tested on its own: the run folder
(:class:`rareid.runs.RunFolder`), ``--ckpt_path`` (:func:`rareid.checkpointing.checkpoint_to_load`)
and the one-line errors (:func:`rareid.runs.one_line_errors`).
"""

from __future__ import annotations

import contextlib
from typing import Any

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch import Trainer
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from rareid.callbacks.finite import StopOnNonFiniteLoss
from rareid.callbacks.seeding import EpochSeeding
from rareid.checkpointing import (
    AtomicCheckpointIO,
    checkpoint_to_load,
    evaluation_options,
    last_epoch_checkpoint,
    read_checkpoint,
    validation_ranks_checkpoints,
)
from rareid.data.datamodule import ReIDDataModule
from rareid.data.transforms import backbone_statistics
from rareid.lightning_parser import add_rareid_arguments, explicit_options
from rareid.models.backbone import restoring_from_checkpoint
from rareid.runs import RunFolder, Stage, one_line_errors
from rareid.runtime import cpu_malloc_wanted, default_loggers, keep_freed_memory
from rareid.tracks.lightning_protocol import MLRVideoTest

EVALUATION_SUBCOMMANDS = ("validate", "test", "predict")


class RAReIDCLI(LightningCLI):
    """LightningCLI with the callbacks rareid needs forced and the shared values linked.

    On top of Lightning's: one process per run folder (a lock), no silent overwrite of an
    earlier run's checkpoints, ``--ckpt_path best|last``, checkpoints written atomically and
    ``last.ckpt`` every epoch, the checkpoint defining the evaluated model, and user errors
    as one line with exit status 2.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.run_folder: RunFolder | None = None
        self.stage: Stage = "parse"
        # Always on, whatever the config says: every epoch reseeds the global RNGs (a resumed
        # fit draws what an uninterrupted one would), a NaN loss stops the run, and a test
        # with data.protocol mlr-video runs the video protocol.
        defaults = dict(kwargs.pop("trainer_defaults", None) or {})
        always = [EpochSeeding(), StopOnNonFiniteLoss(), MLRVideoTest()]
        defaults["callbacks"] = [*(defaults.get("callbacks") or []), *always]
        try:
            with one_line_errors(self._prog, lambda: self.stage, (MisconfigurationException,)):
                super().__init__(*args, trainer_defaults=defaults, **kwargs)
        finally:
            if self.run_folder is not None:
                self.run_folder.close()

    def _prog(self) -> str:
        config = getattr(self, "config", None)
        subcommand = config.get("subcommand") if config is not None else None
        return f"rareid {subcommand}" if subcommand else "rareid"

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        add_rareid_arguments(parser)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        self._args = args
        super().parse_arguments(parser, args)

    def _explicit(self, subcommand: str, section: str) -> set[str] | None:
        return explicit_options(self.parser, getattr(self, "_args", None), subcommand, section)

    @staticmethod
    def _has_validation(config: Any) -> bool:
        """Whether the run validates (and so has a ``best.ckpt``): not when no ids are held out."""
        held_out = config.data.get("val_identities") if config.get("data") else None
        return held_out is None or held_out != 0

    def _parse_ckpt_path(self) -> None:
        """Resolve ``best`` / ``last`` and make the checkpoint define the evaluated model.

        Replaces LightningCLI's version, which parses the checkpoint's hyperparameters over
        the command line's (a conflicting ``--model.*`` option is then ignored without a word).
        """
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else None
        if config is None or config.get("ckpt_path") is None:
            return
        root = config.trainer.default_root_dir or "."
        path, note = checkpoint_to_load(
            config.ckpt_path,
            root,
            subcommand,
            self._has_validation(config),
            config.get("overwrite"),
        )
        if path is None:
            print(note)
            config.ckpt_path = None
            return
        checkpoint = read_checkpoint(path)
        if note:
            print(note)
        config.ckpt_path = path
        if subcommand not in EVALUATION_SUBCOMMANDS:
            return
        defaults = self._parser(subcommand).get_defaults()
        model, data = evaluation_options(
            checkpoint,
            config.model.as_dict(),
            {key: config.data[key] for key in ("rates", "input_size")},
            (defaults.model.as_dict(), defaults.data),
            (self._explicit(subcommand, "model"), self._explicit(subcommand, "data")),
            backbone_statistics,
        )
        for section, values in (("model", model), ("data", data)):
            for name, value in values.items():
                config[section][name] = value

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        self.run_folder = RunFolder(
            config.trainer.default_root_dir or ".",
            fresh_fit=self.subcommand == "fit" and config.get("ckpt_path") is None,
            overwrite=bool(config.get("overwrite")),
            rank_zero=rank_zero_only.rank == 0,
        )
        self.run_folder.open()  # closed by __init__, whatever happens next
        self.stage = "build"

    def instantiate_classes(self) -> None:
        """With ``--ckpt_path`` the model's initial weights (``pretrained``, ``weights_path``)
        are not read: the checkpoint overwrites them, and a checkpoint must load without the
        warm-start file of the run that wrote it."""
        config = self.config.get(self.subcommand) if self.subcommand else None
        restoring = config is not None and config.get("ckpt_path") is not None
        with restoring_from_checkpoint() if restoring else contextlib.nullcontext():
            super().instantiate_classes()

    def after_instantiate_classes(self) -> None:
        self.stage = "run"

    def before_fit(self) -> None:
        """Check the training data before the run folder is touched, then apply --overwrite.

        Lightning builds the training loader (where a batch too large for the data fails)
        only after it has written ``config.yaml``; the loader is built here first, so a bad
        option leaves an earlier run's checkpoints and config as they were.
        """
        datamodule = self.datamodule
        if isinstance(datamodule, ReIDDataModule):
            datamodule.setup("fit")
            datamodule.train_dataloader()
            if datamodule.has_validation:
                datamodule.eval_dataset("val")
        if self.run_folder is not None:
            self.run_folder.apply_overwrite()

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer_config = self._get(self.config_init, "trainer", default={})
        if trainer_config.get("logger") in (None, True) and "logger" not in kwargs:
            kwargs["logger"] = default_loggers(trainer_config.get("default_root_dir") or ".")
        trainer = super().instantiate_trainer(**kwargs)
        if isinstance(trainer.accelerator, CPUAccelerator) and cpu_malloc_wanted():
            keep_freed_memory()
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        best = self._get(self.config_init, "checkpoint")
        datamodule = self.datamodule
        has_validation = getattr(datamodule, "has_validation", None)
        if has_validation is None:
            has_validation = self._has_validation(self.config[self.subcommand])
        if has_validation and self.subcommand == "fit" and isinstance(datamodule, ReIDDataModule):
            has_validation = validation_ranks_checkpoints(datamodule)
        if not has_validation and best in trainer.callbacks:
            trainer.callbacks.remove(best)  # nothing to select on: last.ckpt is the model
        trainer.callbacks.append(last_epoch_checkpoint(best.dirpath))
        return trainer
