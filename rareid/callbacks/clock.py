"""``FitClock``: how much training a validation figure cost, logged beside it."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback


class FitClock(Callback):
    """Log the fit's cumulative training time at every validation (``time/*``).

    ``time/train_s`` is wall time spent training (validation excluded, so the clock measures
    the recipe, not how often it is checked), ``time/cpu_s`` the process CPU time over the
    same spans (steady when other processes share the cores), ``time/steps`` the optimiser
    steps. A resumed fit continues from the values its checkpoint saved.
    """

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0
        self._started: tuple[float, float] | None = None

    def _start(self) -> None:
        if self._started is None:
            self._started = (time.perf_counter(), time.process_time())

    def _stop(self) -> None:
        if self._started is not None:
            wall, cpu = self._started
            self.wall += time.perf_counter() - wall
            self.cpu += time.process_time() - cpu
            self._started = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop()

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._start()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn != "fit" or trainer.sanity_checking:
            return
        for name, value in (
            ("train_s", self.wall),
            ("cpu_s", self.cpu),
            ("steps", float(trainer.global_step)),
        ):
            pl_module.log(f"time/{name}", value, rank_zero_only=True)

    def state_dict(self) -> dict[str, Any]:
        return {"wall": self.wall, "cpu": self.cpu}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.wall = float(state_dict.get("wall", 0.0))
        self.cpu = float(state_dict.get("cpu", 0.0))
