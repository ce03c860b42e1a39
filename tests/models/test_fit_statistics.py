"""Per-level fit statistics, and training under bf16 autocast on the CPU."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from rareid.callbacks.progressive import ProgressiveMaskTraining
from rareid.models.fit_statistics import FitStatistics
from rareid.models.module import RAReIDModule
from tests.helpers import RandomReIDDataModule, quiet_trainer_kwargs, tiny_module_kwargs

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.filterwarnings("ignore:You defined a `validation_step`"),
]


def test_accuracy_is_counted_per_level() -> None:
    stats = FitStatistics(num_levels=3)
    logits = torch.tensor([[5.0, 0.0], [0.0, 5.0], [5.0, 0.0], [5.0, 0.0]])
    pids = torch.tensor([0, 0, 0, 1])
    levels = torch.tensor([1, 1, 3, 3])
    stats.update_accuracy(logits, pids, levels)
    assert stats.compute() == {"acc_level1": 0.5, "acc_level3": 0.5}  # level 2 never seen
    stats.update_accuracy(logits[:1], pids[:1], torch.tensor([3]))
    assert stats.compute()["acc_level3"] == pytest.approx(2 / 3)
    stats.reset()
    assert stats.compute() == {}


def test_alignment_compares_the_own_hr_view_with_other_identities_only() -> None:
    stats = FitStatistics(num_levels=2)
    # LR view i against HR view j; views 0 and 1 share identity 7, view 2 is identity 8.
    distances = torch.tensor(
        [
            [1.0, 0.5, 2.0],  # own 1.0 < other identity 2.0 (same identity's 0.5 ignored)
            [0.1, 3.0, 2.0],  # own 3.0 > other identity 2.0
            [0.2, 0.3, 0.1],  # own 0.1 < 0.2 and 0.3
        ]
    )
    pids = torch.tensor([7, 7, 8])
    stats.update_alignment(distances, torch.tensor([1, 1, 2]), pids, pids)
    assert stats.compute() == {"align_level1": 0.5, "align_level2": 1.0}


def tiny_fit(tmp_path, precision: str) -> tuple[RAReIDModule, L.Trainer, dict]:
    L.seed_everything(0, verbose=False)
    module = RAReIDModule(**tiny_module_kwargs())
    before = {name: p.detach().clone() for name, p in module.named_parameters()}
    trainer = L.Trainer(
        callbacks=[ProgressiveMaskTraining(phase_epochs=[0, 0, 0, 0])],
        **quiet_trainer_kwargs(tmp_path, max_epochs=1, limit_train_batches=2, precision=precision),
    )
    with pytest.warns(UserWarning, match="phase"):
        trainer.fit(module, datamodule=RandomReIDDataModule(size=8, batch_size=4))
    return module, trainer, before


def test_fit_logs_per_level_accuracy_and_alignment(tmp_path) -> None:
    _, trainer, _ = tiny_fit(tmp_path, "32-true")
    logged = {k: float(v) for k, v in trainer.callback_metrics.items()}
    levels = [k for k in logged if k.startswith("train/acc_level")]
    assert levels and all(0.0 <= logged[k] <= 1.0 for k in levels)
    assert "train/acc_level4" in logged  # every HR view is level m
    assert any(k.startswith("train/align_level") for k in logged)


def test_bf16_mixed_trains_on_the_cpu_with_float32_heads_and_outputs(tmp_path) -> None:
    module, trainer, before = tiny_fit(tmp_path, "bf16-mixed")
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    for name, param in module.named_parameters():
        assert param.dtype == torch.float32, name  # master weights stay float32
    moved = {name for name, p in module.named_parameters() if not torch.equal(p, before[name])}
    for part in ("backbone.", "head.", "classifier.", "verifier.", "masks."):
        assert any(name.startswith(part) for name in moved), part
    images = torch.randn(3, 3, 64, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        embedded = module.embed(images, [1, 2, 4])
    assert embedded.dtype == torch.float32  # distances and rankings are computed in float32
    # Training under bf16 autocast computes the losses in float32.
    module.train()
    module.trainer = None  # outside a fit: self.log only warns
    batch = next(iter(RandomReIDDataModule(size=4, batch_size=4).train_dataloader()))
    with torch.autocast("cpu", dtype=torch.bfloat16), pytest.warns(UserWarning, match="log"):
        loss = module.training_step(batch, 0)
    assert loss.dtype == torch.float32
