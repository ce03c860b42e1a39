"""Stop a fit at the first step whose loss is not finite, before any checkpoint holds it."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from rareid.runs import RunFailure


class StopOnNonFiniteLoss(Callback):
    """Raise :class:`~rareid.runs.RunFailure` naming the step where the loss became NaN or inf.

    A backward pass of such a loss turns every weight into NaN, and each later epoch would
    save them as ``last.ckpt`` over the last good checkpoint. Stopping before the backward
    pass keeps the weights, and the checkpoints on disk, as they were.
    """

    def on_before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor
    ) -> None:
        if bool(torch.isfinite(loss).all()):
            return
        raise RunFailure(
            f"the training loss is {float(loss.detach().float().mean())} at step "
            f"{trainer.global_step} (epoch {trainer.current_epoch}): the run is stopped before "
            "its weights change, and nothing of it is saved; lower --model.lr or check the "
            "data, then resume from the last good epoch with --ckpt_path last"
        )
