"""The Lightning half of the ``rareid`` command: ``RAReIDCLI`` (fit/validate/test/predict).

Kept apart from :mod:`rareid.cli` so that the helper subcommands and ``--help`` never import
Lightning or timm: :func:`rareid.cli.run_cli` imports this module only for a Lightning subcommand.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
import warnings
from operator import itemgetter
from pathlib import Path
from typing import Any, NoReturn

from jsonargparse import DefaultHelpFormatter, Namespace
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch import Trainer
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from rareid.callbacks.finite import StopOnNonFiniteLoss
from rareid.callbacks.progressive import ProgressiveMaskTraining
from rareid.callbacks.report import EvaluationReport
from rareid.callbacks.seeding import EpochSeeding
from rareid.callbacks.writer import EmbeddingWriter
from rareid.checkpointing import (
    AtomicCheckpointIO,
    last_epoch_checkpoint,
    model_options_from_checkpoint,
    read_checkpoint,
)
from rareid.data.datamodule import ReIDDataModule
from rareid.data.transforms import backbone_statistics
from rareid.runs import (
    RunFailure,
    RunLock,
    UsageError,
    check_writable,
    checkpoint_dir,
    describe,
    existing_checkpoints,
    remove_stale_temp_files,
    resolve_checkpoint,
)
from rareid.runtime import cpu_malloc_wanted, keep_freed_memory


def default_loggers(root: str | os.PathLike) -> list[Logger]:
    """CSV metrics (first, so it decides ``trainer.log_dir``) and wandb in offline mode.

    Without wandb installed (a minimal GPU image, say) the run logs CSV only and says so,
    rather than failing before it trains."""
    root = Path(root)
    csv_logger = CSVLogger(save_dir=root, name="csv")
    if importlib.util.find_spec("wandb") is None:
        print("rareid: wandb is not installed; logging CSV metrics only", file=sys.stderr)
        return [csv_logger]
    wandb_logger = WandbLogger(save_dir=str(root), project="rareid", name=root.name, offline=True)
    # Lightning's WandbLogger always passes anonymous=None (lightning/pytorch/loggers/wandb.py)
    # and wandb warns "The anonymous setting has no effect" for any value but unset.
    init = getattr(wandb_logger, "_wandb_init", {})
    if init.get("anonymous", "") is None:
        del init["anonymous"]
    return [csv_logger, wandb_logger]


#: The logger of Lightning's rank-zero messages (its tips among them).
LIGHTNING_INFO_LOGGER = "lightning.pytorch.utilities.rank_zero"


def quiet_third_party_noise() -> None:
    """Silence, by name, third-party messages a rareid user can do nothing about."""
    # torch deprecates LeafSpec; Lightning's own pytree helpers still create one.
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
    # Lightning's CLI calls jsonargparse methods deprecated in jsonargparse 4.49 (its switch).
    os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
    # run_cli(args) is meant to be called from Python while sys.argv holds another program's.
    warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter is intended")
    # Lightning's tip to install litlogger, a logger rareid does not use.
    rank_zero_logger = logging.getLogger(LIGHTNING_INFO_LOGGER)
    if not any(isinstance(f, _NoLitLoggerTip) for f in rank_zero_logger.filters):
        rank_zero_logger.addFilter(_NoLitLoggerTip())


class _NoLitLoggerTip(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage().lower()


#: Picks the mean or the std out of :func:`~rareid.data.transforms.backbone_statistics`.
STATISTIC = {"mean": itemgetter(0), "std": itemgetter(1)}

PACKAGE_DIR = Path(__file__).resolve().parent
EVALUATION_SUBCOMMANDS = ("validate", "test", "predict")


def raised_by_rareid(error: BaseException) -> bool:
    """Whether rareid's own code raised ``error`` (a check of the user's input, on purpose).

    Errors raised inside third-party code (torch, numpy, Lightning) keep their traceback:
    they may be bugs, and one line would hide where they come from.
    """
    frame = error.__traceback__
    if frame is None:
        return False
    while frame.tb_next is not None:
        frame = frame.tb_next
    return Path(frame.tb_frame.f_code.co_filename).resolve().is_relative_to(PACKAGE_DIR)


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


class RAReIDCLI(LightningCLI):
    """LightningCLI with the callbacks rareid needs forced and the shared values linked.

    On top of Lightning's: one process per run folder (a lock), no silent overwrite of an
    earlier run's checkpoints, ``--ckpt_path best|last``, checkpoints written atomically and
    ``last.ckpt`` every epoch, the checkpoint defining the evaluated model, and user errors
    as one line with exit status 2.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.run_lock: RunLock | None = None
        try:
            super().__init__(*args, **kwargs)
        except UsageError as error:
            config = getattr(self, "config", None)
            subcommand = config.get("subcommand") if config is not None else None
            prog = f"rareid {subcommand}" if subcommand else "rareid"
            print(f"{prog}: error: {error}", file=sys.stderr)
            raise SystemExit(2) from None
        except RunFailure as error:
            config = getattr(self, "config", None)
            subcommand = config.get("subcommand") if config is not None else None
            prog = f"rareid {subcommand}" if subcommand else "rareid"
            print(f"{prog}: error: {error}", file=sys.stderr)
            raise SystemExit(1) from None
        finally:
            if self.run_lock is not None:
                self.run_lock.release()

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
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
                compute_fn=lambda name, which=which: STATISTIC[which](backbone_statistics(name)),
            )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        self._args = args
        super().parse_arguments(parser, args)

    def _explicit_options(self, subcommand: str, section: str) -> set[str] | None:
        """The ``section`` options given on the command line or in a config file, whatever
        their value (``None`` if that cannot be told)."""
        args = getattr(self, "_args", None)
        if isinstance(args, (dict, Namespace)):
            return None
        try:
            explicit = self.parser.parse_args(args, defaults=False)
        except (SystemExit, Exception):  # the first parse passed; fall back if this one fails
            return None
        options = explicit.get(f"{subcommand}.{section}")
        return set(options.keys()) if options is not None else set()

    # ------------------------------------------------------------------ checkpoint path
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
        if not subcommand:
            return
        config = self.config[subcommand]
        value = config.get("ckpt_path")
        if value is None:
            return
        root = config.trainer.default_root_dir or "."
        path, note = resolve_checkpoint(value, root, self._has_validation(config))
        last = checkpoint_dir(root) / "last.ckpt"
        if value == "best" and not Path(path).is_file() and last.is_file():
            path, note = (
                str(last),
                f"no best.ckpt in {last.parent} (no validation ran): using last.ckpt",
            )
        if subcommand == "fit" and config.get("overwrite"):
            raise UsageError(
                f"--overwrite starts a new run (deleting the old checkpoints) and --ckpt_path "
                f"{value} resumes one: give only one of them"
            )
        if subcommand == "fit" and value == "last" and not Path(path).is_file():
            print(f"no {path} to resume from: starting a new run")
            config.ckpt_path = None
            return
        checkpoint = read_checkpoint(path)
        if note:
            print(note)
        config.ckpt_path = path
        if subcommand in EVALUATION_SUBCOMMANDS:
            self._model_from_checkpoint(subcommand, config, checkpoint)

    def _model_from_checkpoint(
        self, subcommand: str, config: Any, checkpoint: dict[str, Any]
    ) -> None:
        """Model options, rates, input size and normalisation from the checkpoint."""
        saved = dict(checkpoint.get("hyper_parameters") or {})
        if not saved:
            return
        defaults = self._parser(subcommand).get_defaults()
        linked = {"rates": "rates", "input_size": "img_size"}  # data option -> model option
        explicit_data = self._explicit_options(subcommand, "data")
        for data_key, model_key in linked.items():
            if model_key not in saved:
                continue
            wanted = list(saved[model_key])
            model_options_from_checkpoint(
                {data_key: wanted},
                {data_key: config.data[data_key]},
                {data_key: defaults.data.get(data_key)},
                prefix="data",
                explicit=explicit_data,
            )
            config.data[data_key] = wanted
            config.model[model_key] = wanted  # the link was applied before
        given = config.model.as_dict()
        explicit_model = self._explicit_options(subcommand, "model")
        if explicit_model is not None:
            explicit_model -= set(linked.values())  # set through data, checked above
        options = model_options_from_checkpoint(
            saved, given, defaults.model.as_dict(), explicit=explicit_model
        )
        for name, value in options.items():
            config.model[name] = value
        datamodule_saved = checkpoint.get("datamodule_hyper_parameters") or {}
        for which in ("mean", "std"):
            config.data[which] = tuple(
                datamodule_saved.get(which)
                or STATISTIC[which](backbone_statistics(config.model.backbone))
            )

    # ------------------------------------------------------------------ run folder
    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        root = Path(config.trainer.default_root_dir or ".")
        check_writable(root)
        if rank_zero_only.rank != 0:
            return  # DDP workers re-run this command; rank zero owns the folder
        self.run_lock = RunLock(root).acquire()
        if self.run_lock.took_over is not None:
            print(
                f"taking over the run folder {root}: its lock was left by process "
                f"{self.run_lock.took_over}, which no longer runs"
            )
        removed = remove_stale_temp_files(checkpoint_dir(root))
        if removed:
            print(
                f"removed {removed} unfinished checkpoint file(s) of an interrupted save "
                f"in {checkpoint_dir(root)}"
            )
        if self.subcommand == "fit" and config.get("ckpt_path") is None:
            found = existing_checkpoints(root)
            if found and not config.get("overwrite"):
                raise UsageError(
                    f"{checkpoint_dir(root)} already holds {describe(found)} from an earlier "
                    "run: resume it with --ckpt_path last, start again with --overwrite (the "
                    "old checkpoints are deleted), or choose another --trainer.default_root_dir"
                )
            # Deleted in before_fit, once every option, the data and the model are checked.

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
        config = self.config[self.subcommand]
        if not config.get("overwrite") or rank_zero_only.rank != 0:
            return
        root = Path(config.trainer.default_root_dir or ".")
        found = existing_checkpoints(root)
        for path in found:
            path.unlink()
        if found:
            print(
                f"--overwrite: deleted {len(found)} checkpoint(s) of an earlier run in "
                f"{checkpoint_dir(root)}: {describe(found)}"
            )

    def instantiate_classes(self) -> None:
        """Turn rareid's own configuration errors into a one-line CLI error, not a traceback."""
        try:
            super().instantiate_classes()
        except UsageError:
            raise
        except (ValueError, FileNotFoundError, MisconfigurationException) as error:
            # BackboneError is a ValueError; Lightning's trainer options raise the last one.
            raise UsageError(str(error)) from None
        except TypeError as error:  # e.g. a dataset_options key the dataset does not have
            if not raised_by_rareid(error):
                raise
            raise UsageError(str(error)) from None

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
        has_validation = getattr(self.datamodule, "has_validation", None)
        if has_validation is None:
            has_validation = self._has_validation(self.config[self.subcommand])
        if has_validation and self.subcommand == "fit" and not self._validation_discriminates():
            has_validation = False
        if not has_validation and best in trainer.callbacks:
            trainer.callbacks.remove(best)  # nothing to select on: last.ckpt is the model
        trainer.callbacks.append(last_epoch_checkpoint(best.dirpath))
        # Reseed the global RNGs every epoch: a resumed fit draws what an uninterrupted one would.
        trainer.callbacks.append(EpochSeeding())
        trainer.callbacks.append(StopOnNonFiniteLoss())
        return trainer

    def _validation_discriminates(self) -> bool:
        """False, with a word, when validation cannot rank checkpoints (one held-out identity:
        every query's only candidate is its match, rank-1 is 100 % from the first epoch)."""
        datamodule = self.datamodule
        if not isinstance(datamodule, ReIDDataModule):
            return True
        held = len(datamodule.fit_split.val_ids)
        if held >= 2:
            return True
        print(
            f"validation holds {held} identity (data.val_identities="
            f"{datamodule.hparams.val_identities}), so its gallery has one person and "
            "val/rank1 cannot tell checkpoints apart: no best.ckpt is kept, last.ckpt (the "
            "last epoch) is the model and --ckpt_path best uses it; hold out at least 2 "
            "identities to select on validation"
        )
        return False

    def _run_subcommand(self, subcommand: str) -> None:
        try:
            super()._run_subcommand(subcommand)
        except UsageError:
            raise
        except MisconfigurationException as error:  # Lightning's word for a bad option
            raise UsageError(str(error)) from None
        except (ValueError, TypeError, FileNotFoundError, FileExistsError) as error:
            if not raised_by_rareid(error):
                raise
            raise UsageError(str(error)) from None


class _HelpFormatter(DefaultHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """jsonargparse's formatter that keeps the epilog's line breaks."""
