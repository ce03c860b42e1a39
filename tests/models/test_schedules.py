"""Learning-rate factors of the per-phase and the warm-up + cosine schedules."""

from __future__ import annotations

import itertools
import math

import lightning as L
import pytest

from rareid.models.module import RAReIDModule
from rareid.models.schedules import phase_step_factor, warmup_cosine_factor
from tests.helpers import RandomReIDDataModule, quiet_trainer_kwargs, tiny_module_kwargs


def test_single_phase_is_the_plain_step_decay() -> None:
    factors = [phase_step_factor(e, [0], [2, 4], 0.1) for e in range(6)]
    assert factors == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_milestones_count_from_each_phase_start() -> None:
    starts = [0, 3, 3, 7]  # equal starts: one phase in practice
    factors = [phase_step_factor(e, starts, [1, 2], 0.5) for e in range(10)]
    assert factors == pytest.approx([1, 0.5, 0.25, 1, 0.5, 0.25, 0.25, 1, 0.5, 0.25])


def test_warmup_rises_linearly_then_cosine_falls_to_zero() -> None:
    factors = [warmup_cosine_factor(step, total_steps=10, warmup_steps=2) for step in range(10)]
    assert factors[:2] == pytest.approx([1 / 3, 2 / 3])
    assert factors[2] == pytest.approx(1.0)
    assert all(later < earlier for earlier, later in itertools.pairwise(factors[2:]))
    assert factors[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 8)))


def test_cosine_schedule_steps_every_batch_in_a_fit(tmp_path) -> None:
    """The module's cosine schedule is stepped per optimiser step, warm-up included."""
    module = RAReIDModule(
        **tiny_module_kwargs(use_masks=False, lr=1e-2, lr_schedule="cosine", warmup_epochs=1)
    )
    rates: list[float] = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            rates.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer = L.Trainer(max_epochs=2, callbacks=[Record()], **quiet_trainer_kwargs(tmp_path))
    trainer.fit(module, datamodule=RandomReIDDataModule(size=16, batch_size=4))
    assert len(rates) == 8  # 4 steps an epoch
    assert rates[:4] == pytest.approx([1e-2 * f for f in (0.2, 0.4, 0.6, 0.8)])
    assert rates[4] == pytest.approx(1e-2)
    assert rates[5:] == sorted(rates[5:], reverse=True) and rates[-1] < rates[4]


def test_warmup_epochs_must_be_finite_and_not_negative() -> None:
    with pytest.raises(ValueError, match="warmup_epochs"):
        RAReIDModule(**tiny_module_kwargs(lr_schedule="cosine", warmup_epochs=-1))
