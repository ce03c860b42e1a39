"""Progressive stage-by-stage training of the resolution masks (paper Algorithm 1).

Phase 1 trains the masks of the stage closest to the output; each later phase
activates the next stage down with a fresh initialisation and freezes the ones
trained before. Backbone and heads train throughout.

DDP-safe by construction: every mask stays trainable (``requires_grad``) for the
whole fit and stays in the graph; masks that must not move get ``grad = None``
just before the optimizer step, after the gradients were all-reduced, so every
rank skips the same parameters. Fresh initialisations use a seeded generator,
identical on every rank.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn

from rareid.models.schedules import MaskPhaseSchedule


def even_phase_starts(max_epochs: int, num_stages: int) -> list[int]:
    """First epoch of each phase when ``max_epochs`` is split evenly over the stages."""
    return [i * max_epochs // num_stages for i in range(num_stages)]


class ProgressiveMaskTraining(Callback, MaskPhaseSchedule):
    """Drive the mask phases of a ``RAReIDModule``.

    Args:
        phase_epochs: first epoch of each phase, one per stage, starting at 0,
            non-decreasing and below ``max_epochs`` (equal entries pass through a phase at
            once, with a warning: that stage's masks never train). Default: ``max_epochs``
            split evenly over the stages.
        init_seed: seed of the fresh Gaussian initialisation of a newly active stage;
            ``None`` (default) takes the run's seed (``seed_everything``), so every seed of a
            grid draws its own masks, as the paper's repeated runs would.

    The schedule itself (``progressive`` or ``end_to_end``) is the module's
    ``mask_schedule`` switch, so it is saved with the model.
    """

    def __init__(
        self, phase_epochs: Sequence[int] | None = None, init_seed: int | None = None
    ) -> None:
        self.phase_epochs = None if phase_epochs is None else [int(e) for e in phase_epochs]
        self.init_seed = init_seed
        self.phase = 0  # 0: not started; p: stages L-p .. L-1 (0-based) are active
        self._starts: list[int] = []

    @property
    def state_key(self) -> str:
        return "ProgressiveMaskTraining"

    # ------------------------------------------------------------------ schedule
    @staticmethod
    def _num_stages(pl_module: L.LightningModule) -> int:
        masks = getattr(pl_module, "masks", None)
        return 0 if masks is None else len(masks)

    @staticmethod
    def _end_to_end(pl_module: L.LightningModule) -> bool:
        return pl_module.hparams.get("mask_schedule", "progressive") == "end_to_end"

    def resolve_phase_starts(self, max_epochs: int | None, num_stages: int) -> list[int]:
        """First epoch of each phase for a fit of ``max_epochs``; a ValueError names what is
        wrong (the CLI can call this before fitting to report it in one line)."""
        if self.phase_epochs is None:
            if max_epochs is None or max_epochs < 1:
                raise ValueError(
                    "progressive mask training needs trainer.max_epochs to split the phases "
                    "evenly, or explicit phase_epochs (one start epoch per stage)"
                )
            starts = even_phase_starts(max_epochs, num_stages)
        else:
            starts = self.phase_epochs
            if len(starts) != num_stages or starts[0] != 0 or starts != sorted(starts):
                raise ValueError(
                    f"phase_epochs={starts}: expected {num_stages} non-decreasing start epochs "
                    "(one per backbone stage, from the output stage down), the first being 0"
                )
            if max_epochs is not None and max_epochs >= 0 and starts[-1] >= max_epochs:
                raise ValueError(
                    f"phase_epochs={starts} start a phase at epoch {starts[-1]}, but "
                    f"trainer.max_epochs={max_epochs}: the masks of the stages whose phase "
                    "starts at or after max_epochs would never train; lower phase_epochs or "
                    "raise max_epochs"
                )
        skipped = [
            num_stages - 1 - phase
            for phase in range(num_stages - 1)
            if starts[phase] == starts[phase + 1]
        ]
        if skipped:
            rank_zero_warn(
                f"phase_epochs={starts}: the masks of backbone stage(s) {skipped} (0-based) get "
                "no epoch of their own: they are activated and frozen at once, untrained"
            )
        return starts

    @property
    def phase_starts(self) -> list[int]:
        """First epoch of each phase, resolved when the fit is set up (empty before)."""
        return list(self._starts)

    def phase_for_epoch(self, epoch: int) -> int:
        """Phase (1..L) in force during ``epoch``."""
        return sum(1 for start in self._starts if start <= epoch)

    def trainable_stages(self, num_stages: int, end_to_end: bool) -> set[int]:
        """0-based stages whose masks the optimizer may update now."""
        if end_to_end:
            return set(range(num_stages))
        if self.phase == 0:
            return set()
        return {num_stages - self.phase}

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        num_stages = self._num_stages(pl_module)
        if stage == "fit" and num_stages and not self._end_to_end(pl_module):
            self._starts = self.resolve_phase_starts(trainer.max_epochs, num_stages)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        num_stages = self._num_stages(pl_module)
        if num_stages and self._end_to_end(pl_module) and self.phase == 0:
            for stage in range(num_stages):
                pl_module.masks.set_active(stage, True)
            self.phase = num_stages

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        num_stages = self._num_stages(pl_module)
        if not num_stages:
            return
        if not self._end_to_end(pl_module):
            target = self.phase_for_epoch(trainer.current_epoch)
            while self.phase < target:
                self._enter_phase(pl_module, self.phase + 1, num_stages)
        pl_module.log("mask_phase", float(self.phase), on_step=False, on_epoch=True)

    def stage_generator(self, stage: int) -> torch.Generator:
        """The generator of ``stage``'s fresh initialisation (0-based), the same on every rank."""
        if self.init_seed is None:
            # The run's seed, fixed at first use and saved in checkpoints: a resumed fit draws
            # the stages still to come exactly as the uninterrupted fit would.
            self.init_seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        return torch.Generator().manual_seed((self.init_seed << 8) + stage)  # one per stage

    def _enter_phase(self, pl_module: L.LightningModule, phase: int, num_stages: int) -> None:
        stage = num_stages - phase
        mask = pl_module.masks.masks[stage]
        mask.reset_parameters(self.stage_generator(stage))
        mask.active.fill_(True)
        self.phase = phase

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        num_stages = self._num_stages(pl_module)
        if not num_stages:
            return
        trainable = self.trainable_stages(num_stages, self._end_to_end(pl_module))
        for stage, mask in enumerate(pl_module.masks.masks):
            if stage not in trainable:
                mask.logits.grad = None  # frozen or not yet active: the optimizer skips it

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, "phase_epochs": self.phase_epochs, "init_seed": self.init_seed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.phase = int(state_dict["phase"])
        if state_dict.get("init_seed") is not None:
            self.init_seed = int(state_dict["init_seed"])
