"""Lightning DataModule: P x K training batches of HR/LR view pairs, MLR evaluation sets.

Training (paper §IV): every sampled image yields its HR view and one LR view synthesised at a
rate drawn uniformly from the rates above 1 (the paper trains on HR images plus their
r in {2, 3, 4} versions; ``lr_view_hr`` adds r = 1), see :mod:`rareid.data.transforms`.
Batches are identity balanced (:class:`~rareid.data.samplers.PKSampler`). Validation runs on
identities held out from the training split; test and predict on the dataset's test split
(:mod:`rareid.data.protocol` builds both evaluation sets).
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from rareid.data.dataset import EvalDataset, TrainDataset
from rareid.data.lowres import Interpolation
from rareid.data.options import (
    check_choices,
    check_positive_int,
    resolve_eval_rates,
    resolve_lr_view_rates,
)
from rareid.data.protocol import (
    MAX_TRIALS,
    EvalTable,
    FitSplit,
    GalleryMode,
    build_eval_table,
    hold_out_validation,
    resolve_val_count,
    with_val_distractors,
)
from rareid.data.readers import ReIDSplits, build_dataset, resolve_dataset_name
from rareid.data.readers.base import ImageRecord, bad_images_found, find_bad_images
from rareid.data.samplers import PKSampler
from rareid.data.splitfile import (
    SplitFileError,
    read_split_file,
    split_document,
    table_from_stage,
)
from rareid.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EvalTransform,
    TrainTransform,
    check_input_size,
)
from rareid.data.video_protocol import EvalProtocol, check_video_options, protocol_loader
from rareid.levels import LevelPolicy, normalize_rates

__all__ = ["BadImages", "ReIDDataModule"]

logger = logging.getLogger(__name__)

#: What to do with an image that is missing, empty, not an image or truncated.
BadImages = Literal["error", "skip"]


class ReIDDataModule(L.LightningDataModule):
    """Cross-resolution re-ID data: PK-sampled HR/LR training pairs and MLR evaluation sets.

    Args:
        dataset: dataset name for :func:`~rareid.data.readers.build_dataset` (a registered name).
        root: folder that holds the dataset.
        dataset_options: extra options for ``build_dataset`` (e.g. ``split_seed``).
        input_size: network input (H, W).
        rates: rates the model knows (training LR views are drawn from those above 1).
        lr_view_hr: also draw r = 1 for the training LR view (a second HR augmentation). Off,
            as in the paper (HR views plus r in {2, 3, 4}); needed when ``rates`` is ``[1]``.
        eval_rates: rates of the MLR queries; default ``rates`` without 1. May hold unseen
            rates; those queries get the level chosen by ``level_policy``.
        p, k: identities per batch and images per identity (batch size p * k).
        num_workers: DataLoader worker processes.
        eval_batch_size: batch size of validation / test / predict loaders.
        trials: number of evaluation trials of test / predict (at most 62).
        val_identities: identities held out from the training split for validation (the
            checkpoint is selected on them): a count, or a fraction of the training ids;
            ``0`` = no validation. Drawn by ``seed``; see :func:`hold_out_validation`.
        val_trials: number of trials of validation.
        val_distractors: a folder of crops of people no run trains on, added to every
            validation gallery (see :func:`with_val_distractors`).
        gallery_mode: "single" (one random HR image per identity per trial) or "multi".
        interpolation: downsampling interpolation of LR synthesis ("area", "linear", ...).
        level_policy: how an unseen / estimated rate gets a level ("nearest", "lower", "higher").
        reference_height: HR reference height for real LR queries (default: median native
            height of the gallery images).
        hr_reference: also evaluate the undegraded queries (role 2) as an HR reference.
        seed: seed of the PK plan, the LR views and the evaluation draws.
        mean, std: normalisation (link them from the backbone's timm data config).
        pin_memory: pin batches (only when CUDA is available).
        persistent_workers: keep workers between epochs; default: when num_workers > 0.
        naive_rate: the naive per-level baseline (paper Table III): train with both views at
            this rate (one of ``rates``), and evaluate queries at this rate only against a
            gallery downsampled to it. ``None`` (default) is the normal MLR setting.
        padding: zero padding before the random crop of training views, in input pixels
            (paper: 10 at 256x128; scale it down with the input size).
        split_file: a frozen split file (``rareid splits``): fit and test use its
            train/validation/test identities and its evaluation sets instead of drawing them;
            :attr:`split_hash` is its content hash.
        verify_eval_images: check the header and end of every evaluation image (val/test)
            before the first batch (training images are always checked, before the first
            training batch); ``False`` leaves a bad evaluation file to the loader, which
            stops at it naming it.
        bad_images: what a bad image found by those checks does (missing, empty, not an
            image, a JPEG/PNG cut short): ``"error"`` (default) stops naming every one of them,
            because a broken file usually means an incomplete copy or download the user wants
            to repair, and a run on silently fewer images trains and scores something else;
            ``"skip"`` leaves them out with one warning line that counts them and names the
            first (the evaluation sets are then drawn from the images left; a frozen
            ``split_file`` cannot leave any out and stays an error).
        rates_without_hr: allow ``rates`` without 1: the smallest rate's level then stands
            for full-resolution images (training HR views, the gallery). Off by default, as
            leaving 1 out is more often a slip than a choice.
        protocol: ``"mlr"`` (image queries, the paper's) or ``"mlr-video"``: ``rareid test``
            ranks query tracklets of the video ``dataset`` (``synthetic-video``, ``mars``,
            ``dukevideo``, ``ilidsvid``, ``prid2011``) degraded by rate schedules against HR
            gallery tracklets (:mod:`rareid.tracks.protocol`; ``trials`` and ``seed`` apply).
    """

    def __init__(
        self,
        dataset: str = "synthetic",
        root: str = "data",
        dataset_options: dict[str, Any] | None = None,
        input_size: tuple[int, int] = (256, 128),
        rates: list[float] = [1, 2, 3, 4],  # noqa: B006 -- shown as is in the CLI help
        eval_rates: list[float] | None = None,
        lr_view_hr: bool = False,
        p: int = 8,
        k: int = 4,
        num_workers: int = 4,
        eval_batch_size: int = 64,
        trials: int = 10,
        val_identities: int | float = 0.1,
        val_trials: int = 1,
        val_distractors: str | None = None,
        gallery_mode: GalleryMode = "single",
        interpolation: Interpolation = "area",
        level_policy: LevelPolicy = "nearest",
        reference_height: float | None = None,
        hr_reference: bool = True,
        seed: int = 0,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        pin_memory: bool = True,
        persistent_workers: bool | None = None,
        naive_rate: float | None = None,
        padding: int = 10,
        split_file: str | None = None,
        verify_eval_images: bool = True,
        bad_images: BadImages = "error",
        rates_without_hr: bool = False,
        protocol: EvalProtocol = "mlr",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        # --- validate every option up front, naming it
        check_choices(protocol=(protocol, EvalProtocol))
        if protocol == "mlr-video":
            check_video_options(dataset, dataset_options)
        else:
            try:
                resolve_dataset_name(dataset)
            except (TypeError, ValueError) as err:
                raise ValueError(f"dataset: {err}") from None
        self.input_size = check_input_size(input_size)
        self.rates = normalize_rates(rates)
        self.naive_rate = None if naive_rate is None else float(naive_rate)
        self.eval_rates = resolve_eval_rates(rates, self.rates, eval_rates, naive_rate)
        self.lr_view_rates = resolve_lr_view_rates(rates, self.rates, rates_without_hr, lr_view_hr)
        self.p = check_positive_int("p", p)
        self.k = check_positive_int("k", k)
        self.num_workers = check_positive_int("num_workers", num_workers, minimum=0)
        self.eval_batch_size = check_positive_int("eval_batch_size", eval_batch_size)
        self.trials = check_positive_int("trials", trials, maximum=MAX_TRIALS)
        self.val_trials = check_positive_int("val_trials", val_trials, maximum=MAX_TRIALS)
        check_choices(
            gallery_mode=(gallery_mode, GalleryMode),
            interpolation=(interpolation, Interpolation),
            level_policy=(level_policy, LevelPolicy),
            bad_images=(bad_images, BadImages),
        )
        if reference_height is not None and not float(reference_height) > 0:
            raise ValueError(
                f"reference_height: expected a positive height, got {reference_height}"
            )
        if dataset_options is not None and not isinstance(dataset_options, dict):
            raise ValueError(f"dataset_options: expected a mapping, got {dataset_options!r}")
        self.seed = check_positive_int("data.seed", seed, minimum=0)
        resolve_val_count(val_identities, eligible=1 << 62, total=1 << 62)  # type and sign
        # Normalisation constants are validated by building the transforms once.
        EvalTransform(self.input_size, mean, std, interpolation)
        self._eval_datasets: dict[str, EvalDataset] = {}
        self._train_dataset: TrainDataset | None = None

    # ------------------------------------------------------------------ dataset index
    @cached_property
    def dataset(self) -> ReIDSplits:
        """The dataset's file lists (built on first access; reading the lists is cheap)."""
        hp = self.hparams
        return build_dataset(hp.dataset, hp.root, **(hp.dataset_options or {}))

    @cached_property
    def split_document(self) -> dict[str, Any] | None:
        """The frozen split file's content (``split_file``), checked; None without one."""
        if self.hparams.split_file is None:
            return None
        document = read_split_file(self.hparams.split_file)
        rates = [float(r) for r in document["protocol"]["rates"]]
        if rates != list(self.rates):
            raise SplitFileError(
                f"split_file: {self.hparams.split_file} gives levels for rates {rates}, but "
                f"rates={list(self.rates)}; use the same rates or write a new split file"
            )
        return document

    @property
    def split_hash(self) -> str:
        """Content hash of the evaluation split in use (of ``split_file`` when given)."""
        document = self.split_document
        return (document if document is not None else split_document(self))["sha256"]

    def protocol_options(self) -> dict[str, Any]:
        """The options that decide the evaluation sets (recorded in split files)."""
        hp = self.hparams
        return {
            "dataset": resolve_dataset_name(hp.dataset),
            "dataset_options": dict(hp.dataset_options or {}),
            "seed": self.seed,
            "rates": list(self.rates),
            "eval_rates": list(self.eval_rates),
            "trials": self.trials,
            "val_trials": self.val_trials,
            "val_identities": hp.val_identities,
            "gallery_mode": hp.gallery_mode,
            "level_policy": hp.level_policy,
            "reference_height": hp.reference_height,
            "hr_reference": hp.hr_reference,
            "naive_rate": self.naive_rate,
            **({"val_distractors": hp.val_distractors} if hp.get("val_distractors") else {}),
        }

    @cached_property
    def fit_split(self) -> FitSplit:
        """Training records and the validation set held out from them (never test ids)."""
        document = self.split_document
        count = self.hparams.val_identities if document is None else len(document["val_ids"])
        fixed = (
            {}
            if document is None
            else {"held_ids": document["val_ids"], "train_ids": document["train_ids"]}
        )
        split = hold_out_validation(self.dataset, count, self.seed, **fixed)
        return with_val_distractors(split, self.hparams.get("val_distractors"))

    @property
    def num_classes(self) -> int:
        """Training identities left after the hold-out (0 for a test-only dataset)."""
        if self.hparams.protocol == "mlr-video" or not self.dataset.train:
            return 0
        return self.fit_split.num_classes

    @property
    def has_validation(self) -> bool:
        """Whether ``fit`` runs a validation loop (``val_identities`` > 0)."""
        if self.hparams.protocol == "mlr-video":
            return False
        if self.split_document is not None:
            return "val" in self.split_document["stages"]
        if not self.dataset.train:
            return False  # nothing to hold out: a test-only dataset
        return self.fit_split.val is not None

    @property
    def num_levels(self) -> int:
        return len(self.rates)

    # ------------------------------------------------------------------ datasets
    def setup(self, stage: str | None = None) -> None:
        if self.hparams.protocol == "mlr-video":
            if stage not in (None, "test"):
                raise ValueError(f"protocol: mlr-video is evaluated by `rareid test`, not {stage}")
            return
        _ = self.dataset  # fail early on a missing / malformed dataset
        if stage in (None, "fit", "validate"):
            _ = self.fit_split
        trainer = getattr(self, "trainer", None)
        if stage == "fit" and trainer is not None and not self.has_validation:
            trainer.limit_val_batches = 0  # no held-out identities: no validation loop

    def train_dataset(self) -> TrainDataset:
        if self._train_dataset is None:
            hp = self.hparams
            naive = self.naive_rate
            transform = TrainTransform(
                self.input_size,
                self.lr_view_rates if naive is None else (naive,),
                hp.mean,
                hp.std,
                padding=hp.padding,
                interpolation=hp.interpolation,
                seed=self.seed,
                hr_rate=1.0 if naive is None else naive,
            )
            records = self._usable_records(self.fit_split.train, f"{hp.dataset} training images")
            self._train_dataset = TrainDataset(
                records, transform, seed=self.seed, level_rates=self.rates
            )
        return self._train_dataset

    def _usable_records(self, records: list[ImageRecord], what: str) -> list[ImageRecord]:
        """``records`` whose files pass the header check (or an error naming those that fail)."""
        bad = find_bad_images(r.path for r in records)
        if not bad:
            return records
        bad_images_found(bad, what, self.hparams.bad_images, logger)
        return [r for r in records if r.path not in bad]

    @staticmethod
    def _stage_key(stage: str) -> str:
        keys = {"fit": "val", "val": "val", "validate": "val", "validation": "val"}
        keys.update({"test": "test", "predict": "test"})
        if stage not in keys:
            raise ValueError(f"stage: unknown value {stage!r}; choose one of {sorted(keys)}")
        return keys[stage]

    def eval_dataset(self, stage: str) -> EvalDataset:
        """The evaluation dataset of ``stage`` ("val"/"validate", "test" or "predict")."""
        key = self._stage_key(stage)
        if key not in self._eval_datasets:
            hp = self.hparams
            if key == "val" and not self.has_validation:
                raise ValueError(
                    "val_identities=0: there is no validation set (hold out training "
                    "identities with val_identities to validate)"
                )
            what = f"{hp.dataset} {key} images"
            if self.split_document is not None:
                root = os.path.abspath(os.path.expanduser(hp.root))
                table = table_from_stage(self.split_document["stages"][key], root)
                if hp.verify_eval_images:
                    bad = find_bad_images(table.paths)
                    if bad:
                        bad_images_found(bad, what, self.hparams.bad_images, logger, frozen=True)
            else:
                source = self.fit_split.val if key == "val" else self.dataset
                table = self._build_eval_table(key, source)
                bad = find_bad_images(table.paths) if hp.verify_eval_images else {}
                if bad:
                    bad_images_found(bad, what, self.hparams.bad_images, logger)
                    # draw the evaluation set again from the images left
                    keep = {
                        name: [r for r in getattr(source, name) if r.path not in bad]
                        for name in ("train", "query", "gallery", "train_lowres")
                    }
                    table = self._build_eval_table(key, replace(source, **keep))
            transform = EvalTransform(self.input_size, hp.mean, hp.std, hp.interpolation)
            self._eval_datasets[key] = EvalDataset(table, transform)
        return self._eval_datasets[key]

    def _build_eval_table(self, key: str, source: ReIDSplits) -> EvalTable:
        """The MLR evaluation table of ``key`` ("val" or "test") drawn from ``source``."""
        hp = self.hparams
        return build_eval_table(
            source,
            self.rates,
            self.eval_rates,
            trials=self.val_trials if key == "val" else self.trials,
            gallery_mode=hp.gallery_mode,
            seed=self.seed,
            level_policy=hp.level_policy,
            reference_height=hp.reference_height,
            hr_reference=hp.hr_reference and self.naive_rate is None,
            gallery_rate=1.0 if self.naive_rate is None else self.naive_rate,
        )

    def eval_sample_info(self, stage: str, index: int) -> dict[str, Any]:
        """path, role, trial, rate, level, pid, camid (and more) of evaluation row ``index``."""
        return self.eval_dataset(stage).info(index)

    def describe_rows(self, stage: str, indices: list[int]) -> dict[str, Any]:
        """``path`` (relative to ``root``) and ``rate`` of evaluation rows, for predict output."""
        dataset = self.eval_dataset(stage)
        root = os.path.abspath(os.path.expanduser(self.hparams.root))
        rows = np.asarray(indices, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= len(dataset)):
            raise IndexError(f"row indices must be in 0..{len(dataset) - 1}")
        table = dataset.table
        return {
            "path": [
                Path(os.path.relpath(table.paths[int(table.path_index[i])], root)).as_posix()
                for i in rows
            ],
            "rate": table.rate[rows].copy(),
        }

    def load_eval_image(self, stage: str, index: int) -> np.ndarray:
        """uint8 HxWx3 RGB image of row ``index`` as displayed (degraded queries at LR size)."""
        return self.eval_dataset(stage).load_image(index)

    # ------------------------------------------------------------------ loaders
    def _loader_kwargs(self) -> dict[str, Any]:
        hp = self.hparams
        persistent = hp.persistent_workers
        if persistent is None:
            persistent = self.num_workers > 0
        return {
            "num_workers": self.num_workers,
            "pin_memory": bool(hp.pin_memory and torch.cuda.is_available()),
            "persistent_workers": bool(persistent and self.num_workers > 0),
        }

    def _distributed(self) -> tuple[int | None, int | None]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return None, None
        return trainer.world_size, trainer.global_rank

    def train_dataloader(self) -> DataLoader:
        dataset = self.train_dataset()
        num_replicas, rank = self._distributed()
        try:
            sampler = PKSampler(
                dataset.pids.tolist(),
                self.p,
                self.k,
                seed=self.seed,
                num_replicas=num_replicas,
                rank=rank,
                keyed=True,  # each sample's views seeded by its place in the epoch's plan
            )
        except ValueError as err:
            held = len(self.fit_split.val_ids)
            if not held:
                raise
            raise ValueError(
                f"{err} ({held} training identities are held out for validation: "
                f"val_identities={self.hparams.val_identities})"
            ) from None
        dataset.rank = sampler.rank
        sampler.set_epoch(self._next_epoch())
        return DataLoader(dataset, batch_sampler=sampler, **self._loader_kwargs())

    def _next_epoch(self) -> int:
        """The epoch the fit runs next (the one after the checkpoint's on a resume).

        Lightning creates the training iterator before it calls ``set_epoch``; workers then
        prefetch their first batches from the sampler's current epoch, so the sampler must
        already be there, or the first epoch after a resume replays epoch 0's plan.
        """
        trainer = getattr(self, "trainer", None)
        fit_loop = getattr(trainer, "fit_loop", None)
        if fit_loop is None:
            return 0
        return int(fit_loop.epoch_progress.current.processed)

    def _eval_loader(self, stage: str) -> DataLoader:
        return DataLoader(
            self.eval_dataset(stage),
            batch_size=self.eval_batch_size,
            shuffle=False,
            drop_last=False,
            **self._loader_kwargs(),
        )

    def val_dataloader(self) -> DataLoader | list:
        # No held-out identities: an empty list makes Lightning skip the validation loop.
        if not self.has_validation:
            return []
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        if self.hparams.protocol == "mlr-video":
            return protocol_loader()  # the protocol is run whole by its callback
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader("predict")
