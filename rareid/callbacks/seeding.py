"""Global RNGs reseeded at every training epoch, so a resumed fit repeats an uninterrupted one.

Lightning resumes at the start of the epoch after the checkpoint's, but the global random
number generators (torch's, numpy's, Python's) are then where ``seed_everything`` left them,
not where the uninterrupted fit had them after its earlier epochs. Anything drawing from them
during training (dropout, drop-path, a random augmentation in ``training_step``) would then
draw differently. Seeding them at the first batch of epoch ``e`` from (seed, e, rank) makes
every epoch's draws a function of those alone. The data pipeline does not rely on this: its draws
are keyed by their place in the epoch's plan (:class:`~rareid.data.samplers.SampleKey`).
"""

from __future__ import annotations

import os
import random
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """A 63-bit seed that depends on (seed, epoch, rank) only."""
    state = np.random.SeedSequence([int(seed) & (2**63 - 1), int(epoch), int(rank)])
    return int(state.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


class EpochSeeding(Callback):
    """Reseed torch's, numpy's and Python's global RNGs at the first batch of every epoch.

    Args:
        seed: base seed; ``None`` = the seed ``seed_everything`` was given (0 without one).
            A resumed fit keeps the seed of the run it continues (saved in the checkpoint),
            whatever the seed of the resuming command.

    Ranks get different seeds (``rank`` is part of the seed), as they would draw different
    dropout masks in one stream.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    @property
    def state_key(self) -> str:
        return "EpochSeeding"

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.seed is None:
            self.seed = int(os.environ.get("PL_GLOBAL_SEED", 0))

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # At the first batch, not at epoch start: the training iterator of the first epoch
        # after a resume is created before ``on_train_epoch_start``, in other epochs after
        # it, and creating one draws from torch's RNG.
        if batch_idx != 0:
            return
        seed = epoch_seed(self.seed or 0, trainer.current_epoch, trainer.global_rank)
        torch.manual_seed(seed)  # CPU and every CUDA device
        np.random.seed(seed % 2**32)
        random.seed(seed)

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("seed") is not None:
            self.seed = int(state_dict["seed"])
