"""``RAReIDModule``: the paper's resolution-adaptive re-ID model as a LightningModule."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from torch import nn

from rareid.evaluation import MLRMetric
from rareid.evaluation.mlr import RUN_BY_CALLBACK
from rareid.levels import Role, normalize_rates
from rareid.losses import gather_across_ranks, identity_loss, verification_loss
from rareid.models.backbone import restoring_from_checkpoint
from rareid.models.checks import (
    OPTIMISATION_OPTIONS,
    check_optimisation_options,
    check_query_subvectors,
    check_training_options,
)
from rareid.models.embedding import LevelEmbedding
from rareid.models.fit_statistics import FitStatistics
from rareid.models.heads import (
    PrototypeClassifier,
    SplitMode,
    VerificationHead,
)
from rareid.models.masks import MaskGranularity, MaskInit
from rareid.models.schedules import (
    LRSchedule,
    MaskPhaseSchedule,
    phase_step_factor,
    warmup_cosine_factor,
)


class RAReIDModule(LevelEmbedding, L.LightningModule):
    """Backbone with resolution masks + varying-length embedding + ID and verification losses.

    A switched-off loss has no head at all, so DDP never meets an unused parameter. Without
    training identities (a test-only dataset) there is no classifier: evaluation needs none,
    and a fit is refused in ``on_fit_start``.

    Args:
        backbone: any timm model name with ``feature_info`` (e.g. ``resnet50``,
            ``swin_base_patch4_window7_224``).
        num_classes: number of training identities (linked from the DataModule by the CLI).
        rates: downsampling rates the model knows; ``m = len(rates)`` levels.
        embedding_dim: ``d``; split into ``m`` sub-vectors, level 1 (lowest resolution) first.
        split: ``proportional`` (default, the paper's Table II: a level at rate ``r`` uses the
            first ~``d / r`` dimensions, rates [1, 2, 3, 4] give sizes d/4, d/12, d/6, d/2)
            or ``equal`` (``d / m`` each).
        split_sizes: explicit sizes (summing to ``d``); wins over ``split``.
        embedding_norm: BatchNorm1d after the embedding FC (off in the paper).
        pretrained / weights_path: timm weights from the hub, or a local file (offline).
        img_size: network input (H, W); Swin needs it at construction.
        last_stride: 1 for the re-ID last-stride trick; default 1 for ResNets, native otherwise.
        use_masks / varying_length / use_cls_loss / use_verif_loss / mask_schedule: the
            paper's ablation switches (Tables III-V). All off = the "IDE + Verif" baseline.
        mask_init / mask_init_mean / mask_init_std: a newly active stage's mask logits:
            ``gaussian`` N(mean, std) as in the paper (gates near 0.5), or ``identity``
            (gates 0.98: activating a stage leaves the trained network almost unchanged).
        mask_granularity: ``stage`` (one mask per stage output, the paper's "four residual
            blocks") or ``block`` (one per residual block inside each stage); either way the
            progressive schedule activates a whole stage per phase.
        verif_weight: ``lambda`` in ``L_cls + lambda L_verif``.
        lr / weight_decay / milestones / gamma: Adam with step decay (epochs).
        lr_schedule: ``step`` decays by ``gamma`` at ``milestones`` over the whole fit (the
            paper's wording); ``per_phase`` restarts at ``lr`` at every mask phase start and
            counts ``milestones`` from there, so every stage's masks train at full rate;
            ``cosine`` warms up linearly for ``warmup_epochs`` and then follows one cosine
            to 0 at the last step, per step (``milestones`` and ``gamma`` are unused).
        warmup_epochs: the cosine schedule's linear warm-up (may be fractional).
        mask_lr: learning rate of the mask logits (default ``lr``); decays with the same
            schedule. Logits start with a spread of ``mask_init_std`` while Adam moves them
            by about ``mask_lr`` per step, so at ``lr`` they barely leave their initialisation.
        distance: ``euclidean`` (squared, the paper's) or ``cosine`` for evaluation.
        rerank: test results also on k-reciprocal re-ranked distances (own ``rerank/`` rows);
            ``rerank_k1``, ``rerank_k2``, ``rerank_lambda`` are its parameters.
        query_subvectors: the paper's Table II study, an evaluation option: every MLR query is
            embedded at its own level (its masks) but ranked with its first ``N`` sub-vectors
            instead of its level's ``k`` (``N > k`` brings in sub-vectors never trained for its
            resolution). HR queries and the gallery are unchanged. Needs varying length.
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        num_classes: int = 751,
        rates: Sequence[float] = (1, 2, 3, 4),
        embedding_dim: int = 2048,
        split: SplitMode = "proportional",
        split_sizes: Sequence[int] | None = None,
        embedding_norm: bool = False,
        pretrained: bool = False,
        weights_path: str | None = None,
        img_size: tuple[int, int] = (256, 128),
        last_stride: int | None = None,
        backbone_kwargs: dict[str, Any] | None = None,
        use_masks: bool = True,
        varying_length: bool = True,
        mask_schedule: str = "progressive",
        mask_init: MaskInit = "gaussian",
        mask_granularity: MaskGranularity = "stage",
        mask_init_mean: float = 0.0,
        mask_init_std: float = 1.0,
        use_cls_loss: bool = True,
        use_verif_loss: bool = True,
        verif_weight: float = 0.5,
        verif_hidden: int = 512,
        label_smoothing: float = 0.0,
        lr: float = 3.5e-4,
        weight_decay: float = 5e-4,
        milestones: Sequence[int] = (40, 70),
        gamma: float = 0.1,
        lr_schedule: LRSchedule = "step",
        warmup_epochs: float = 0.0,
        mask_lr: float | None = None,
        distance: str = "euclidean",
        max_rank: int = 20,
        channels_last: bool = False,
        rerank: bool = False,
        rerank_k1: int = 20,
        rerank_k2: int = 6,
        rerank_lambda: float = 0.3,
        query_subvectors: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        check_optimisation_options(**{name: self.hparams[name] for name in OPTIMISATION_OPTIONS})
        if any(int(epoch) != epoch or int(epoch) < 1 for epoch in milestones):
            raise ValueError(
                f"model.milestones: expected epochs 1, 2, ... at which the learning rate decays, "
                f"got {list(milestones)} (a milestone below 1 never fires)"
            )
        check_training_options(mask_schedule, use_cls_loss, use_verif_loss)
        check_query_subvectors(query_subvectors, varying_length, len(normalize_rates(rates)))
        self._build_network(self.hparams)
        self._build_loss_heads()
        self.fit_statistics = FitStatistics(self.num_levels)
        self.val_metric = self._make_metric()
        self.test_metric = self._make_metric(rerank=rerank)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def _build_loss_heads(self) -> None:
        """A switched-off loss has no head at all (DDP never meets an unused parameter); no
        training identities (a test-only dataset): no classifier, and a fit is refused."""
        hp = self.hparams
        self.classifier = self.verifier = None
        if hp.use_cls_loss and hp.num_classes > 0:
            self.classifier = PrototypeClassifier(hp.embedding_dim, hp.num_classes)
        if hp.use_verif_loss:
            self.verifier = VerificationHead(hp.embedding_dim, self.split_sizes, hp.verif_hidden)

    def _make_metric(self, rerank: bool = False) -> MLRMetric:
        return MLRMetric(
            split_sizes=self.distance_split_sizes,
            rates=self.rates,
            max_rank=self.hparams.max_rank,
            distance=self.hparams.distance,
            rerank=rerank,
            rerank_k1=self.hparams.rerank_k1,
            rerank_k2=self.hparams.rerank_k2,
            rerank_lambda=self.hparams.rerank_lambda,
            query_subvectors=self.hparams.get("query_subvectors"),
        )

    @classmethod
    def load_from_checkpoint(cls, *args: Any, **kwargs: Any) -> RAReIDModule:
        """Lightning's loader, returning the model in eval mode (ready for ``embed``).

        A local file is first read by rareid's checkpoint reader, so a damaged or foreign
        file is a ``CheckpointError`` naming it. The model is rebuilt without its initial
        weights (the state dict overwrites them): a checkpoint loads on its own, without
        the warm-start file of the run that wrote it.
        """
        source = args[0] if args else kwargs.get("checkpoint_path")
        if isinstance(source, str | os.PathLike) and "://" not in str(source):
            from rareid.checkpoint_reader import read_checkpoint

            read_checkpoint(source)
        with restoring_from_checkpoint():
            return super().load_from_checkpoint(*args, **kwargs).eval()

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        hr, lr = batch["hr"], batch["lr"]
        pids = batch["pid"]
        levels = torch.cat([torch.full_like(batch["lr_level"], self.num_levels), batch["lr_level"]])
        # The backbone may run in bf16 (trainer.precision: bf16-mixed); the heads, the
        # losses and the per-level statistics always run in float32.
        v = self(torch.cat([hr, lr]), levels).float()
        with torch.autocast(device_type=v.device.type, enabled=False):
            return self._training_losses(v, levels, pids)

    def _training_losses(
        self, v: torch.Tensor, levels: torch.Tensor, pids: torch.Tensor
    ) -> torch.Tensor:
        n = pids.shape[0]
        z_levels = self.embedding_levels(levels)
        z = self.pad(v, z_levels)
        self.fit_statistics.update_alignment(
            self.distance(z[n:].detach(), levels[n:], z[:n].detach()), levels[n:], pids, pids
        )

        loss = z.new_zeros(())
        if self.classifier is not None:
            logits = self.classifier(z)
            self.fit_statistics.update_accuracy(logits.detach(), torch.cat([pids, pids]), levels)
            loss_cls = identity_loss(logits, torch.cat([pids, pids]), self.hparams.label_smoothing)
            self.log("train/loss_cls", loss_cls, batch_size=n)
            loss = loss + loss_cls
        if self.verifier is not None:
            # Every LR view against every HR view of the global batch (all ranks), each pair
            # cut to the lower level: N devices compute the loss of one.
            z_lr, z_hr = (gather_across_ranks(part, with_grad=True) for part in (z[n:], z[:n]))
            levels_lr, levels_hr, all_pids = (
                gather_across_ranks(part) for part in (z_levels[n:], z_levels[:n], pids)
            )
            logits = self.verifier.forward_pairs(z_lr, levels_lr, z_hr, levels_hr)
            loss_verif = verification_loss(logits, all_pids, all_pids)
            self.log("train/loss_verif", loss_verif, batch_size=n)
            loss = loss + self.hparams.verif_weight * loss_verif
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        return loss

    def on_train_epoch_start(self) -> None:
        self.fit_statistics.reset()

    def on_train_epoch_end(self) -> None:
        # Per-level training accuracy and LR-HR alignment: whether each prefix objective fits.
        for name, value in self.fit_statistics.compute(self.device).items():
            self.log(f"train/{name}", value, on_step=False, on_epoch=True)

    def on_fit_start(self) -> None:
        if self.hparams.use_cls_loss and self.classifier is None:
            raise ValueError(
                f"num_classes={self.hparams.num_classes}: the identity loss needs the training "
                "split's identities (a dataset without train/ can be tested, not trained on)"
            )
        if self.masks is None:
            return
        has_schedule = any(isinstance(c, MaskPhaseSchedule) for c in self.trainer.callbacks)
        if not has_schedule:
            raise RuntimeError(
                "RAReIDModule with use_masks=True needs the ProgressiveMaskTraining callback "
                "(it activates, re-initialises and freezes the masks stage by stage; the rareid "
                "CLI adds it): Trainer(callbacks=[ProgressiveMaskTraining()]) — or set "
                "use_masks=False"
            )

    # ------------------------------------------------------------------ evaluation
    def _eval_update(self, metric: MLRMetric, batch: dict[str, torch.Tensor]) -> None:
        levels = batch["level"]
        forced = self.hparams.get("query_subvectors")
        subvectors = None
        if forced is not None:
            subvectors = torch.where(batch["role"] == Role.QUERY, forced, levels)
        z = self.embed(batch["image"], levels, subvectors)
        metric.update(
            z,
            levels,
            batch["pid"],
            batch["camid"],
            batch["role"],
            batch["trial"],
            batch["gallery_trials"],
            batch["index"],
        )

    def _log_results(self, metric: MLRMetric, prefix: str) -> dict[str, torch.Tensor]:
        results = metric.compute()
        # Values are already gathered across ranks by the metric: no sync_dist. Standard
        # deviations and per-level rank-5+ stay in the report (results.json), so that
        # Lightning's own table stays readable.
        for key, value in results.items():
            name = key.rsplit("/", 1)[-1]
            if name.endswith("_std") or ("/" in key and name not in ("rank1", "mAP")):
                continue
            self.log(f"{prefix}/{key}", float(value), prog_bar=key in ("rank1", "mAP"))
        return results

    def on_validation_epoch_start(self) -> None:
        self.val_metric.reset()

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_update(self.val_metric, batch)

    def on_validation_epoch_end(self) -> None:
        self._log_results(self.val_metric, "val")

    def on_test_epoch_start(self) -> None:
        self.test_metric.reset()
        self.test_run_by_callback = False

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        if RUN_BY_CALLBACK in batch:  # a protocol a callback runs whole (mlr-video)
            self.test_run_by_callback = True
            return
        self._eval_update(self.test_metric, batch)

    def on_test_epoch_end(self) -> None:
        if not self.test_run_by_callback:
            self.test_results = self._log_results(self.test_metric, "test")

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, Any]:
        levels = batch["level"]
        out = {"embedding": self.embed(batch["image"], levels).cpu()}
        for key in ("level", "pid", "camid", "role", "trial", "index"):
            if key in batch:
                out[key] = batch[key].cpu()
        return out

    # ------------------------------------------------------------------ optimisation
    def parameter_groups(self) -> list[dict[str, Any]]:
        """Weight decay on weights only: masks, norms and biases are exempt. The masks get
        their own group, at ``mask_lr`` when set."""
        mask_params = set() if self.masks is None else {id(p) for p in self.masks.parameters()}
        decay, no_decay, masks = [], [], []
        for param in self.parameters():
            if not param.requires_grad:
                continue
            if id(param) in mask_params:
                masks.append(param)
            elif param.ndim <= 1:
                no_decay.append(param)
            else:
                decay.append(param)
        groups = [
            {"params": decay, "weight_decay": self.hparams.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        if masks:
            mask_lr = self.hparams.get("mask_lr")
            lr = self.hparams.lr if mask_lr is None else mask_lr
            groups.append({"params": masks, "weight_decay": 0.0, "lr": lr})
        return groups

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.Adam(self.parameter_groups(), lr=self.hparams.lr)
        milestones = [int(milestone) for milestone in self.hparams.milestones]
        schedule = self.hparams.get("lr_schedule", "step")
        if schedule == "cosine":
            return {"optimizer": optimizer, "lr_scheduler": self._cosine_schedule(optimizer)}
        if schedule == "per_phase":
            factor = functools.partial(
                phase_step_factor,
                phase_starts=self.mask_phase_starts(),
                milestones=milestones,
                gamma=self.hparams.gamma,
            )
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        else:
            scheduler = torch.optim.lr_scheduler.MultiStepLR(
                optimizer, milestones=milestones, gamma=self.hparams.gamma
            )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }

    def _cosine_schedule(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """Warm-up + cosine, stepped every optimiser step over the whole fit."""
        trainer = self._trainer
        total = int(trainer.estimated_stepping_batches) if trainer is not None else 1
        epochs = trainer.max_epochs if trainer is not None and trainer.max_epochs else 1
        warmup = round(float(self.hparams.get("warmup_epochs", 0.0)) * total / max(epochs, 1))
        factor = functools.partial(warmup_cosine_factor, total_steps=total, warmup_steps=warmup)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"scheduler": scheduler, "interval": "step"}

    def mask_phase_starts(self) -> list[int]:
        """First epoch of each progressive mask phase (``[0]``: one phase, nothing to restart)."""
        if self.masks is None or self.hparams.mask_schedule == "end_to_end":
            return [0]
        trainer = self._trainer
        for callback in [] if trainer is None else trainer.callbacks:
            if isinstance(callback, MaskPhaseSchedule) and callback.phase_starts:
                return list(callback.phase_starts)
        return [0]

    def mask_parameters(self) -> list[nn.Parameter]:
        return [] if self.masks is None else [m.logits for m in self.masks.masks]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the training split's identities and files (``rareid calibrate`` refuses to
        set thresholds on people the model saw)."""
        from rareid.checkpointing import training_identities

        record = training_identities(getattr(self._trainer, "datamodule", None))
        if record is not None:
            checkpoint["rareid_training_identities"] = record

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Evaluate a checkpoint trained on other identities: its classifier is not needed."""
        from rareid.checkpointing import adapt_classifier

        trainer = self._trainer
        adapt_classifier(
            self, checkpoint, fitting=trainer is not None and trainer.state.fn == "fit"
        )
