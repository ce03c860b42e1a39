"""Interrupted and resumed fit == uninterrupted fit, in the right mask phase; checkpoints
load with ``weights_only=True``."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from rareid.callbacks.progressive import ProgressiveMaskTraining
from rareid.models.module import RAReIDModule
from tests.helpers import RandomReIDDataModule, quiet_trainer_kwargs, tiny_module_kwargs

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no"),
]

MAX_EPOCHS = 4  # default even split over 4 stages: phases start at epochs 0, 1, 2, 3


class StartState(Callback):
    def __init__(self, schedule: ProgressiveMaskTraining) -> None:
        self.schedule = schedule
        self.phases: list[int] = []

    def on_train_start(self, trainer, pl_module) -> None:
        self.phase_at_start = self.schedule.phase
        self.active_at_start = pl_module.masks.active_flags()
        self.epoch_at_start = trainer.current_epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.phases.append(self.schedule.phase)


def run(root, seed: int, ckpt_path: str | None = None):
    L.seed_everything(seed, verbose=False)
    module = RAReIDModule(**tiny_module_kwargs())
    schedule = ProgressiveMaskTraining()
    state = StartState(schedule)
    checkpoints = ModelCheckpoint(
        dirpath=root / "ckpt",
        filename="{epoch}",
        save_top_k=-1,
        every_n_epochs=1,
        save_on_train_epoch_end=True,
    )
    trainer = L.Trainer(
        callbacks=[schedule, state, checkpoints],
        deterministic=True,
        **quiet_trainer_kwargs(
            root, max_epochs=MAX_EPOCHS, limit_train_batches=2, enable_checkpointing=True
        ),
    )
    trainer.fit(module, datamodule=RandomReIDDataModule(size=12, batch_size=4), ckpt_path=ckpt_path)
    return module, schedule, state


def test_resumed_fit_matches_uninterrupted_fit(tmp_path) -> None:
    full, full_schedule, full_state = run(tmp_path / "full", seed=0)
    assert full_state.phases == [1, 2, 3, 4]
    assert full_schedule.phase == 4

    # Checkpoint after epoch 1: the switch to phase 2 happened, the last switch has not.
    mid = tmp_path / "full" / "ckpt" / "epoch=1.ckpt"
    checkpoint = torch.load(mid, weights_only=True)  # no non-allowlisted objects inside
    assert checkpoint["callbacks"]["ProgressiveMaskTraining"]["phase"] == 2
    assert checkpoint["epoch"] == 1
    for path in sorted((tmp_path / "full" / "ckpt").glob("*.ckpt")):
        torch.load(path, weights_only=True)

    resumed, schedule, state = run(tmp_path / "resumed", seed=99, ckpt_path=str(mid))
    assert state.epoch_at_start == 2
    assert state.phase_at_start == 2
    assert state.active_at_start == [False, False, True, True]
    assert state.phases == [3, 4]
    assert schedule.phase == 4
    assert resumed.masks.active_flags() == [True] * 4

    expected = full.state_dict()
    got = resumed.state_dict()
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(got[key], value), key


def test_module_loads_from_checkpoint_with_masks_and_flags(tmp_path) -> None:
    run(tmp_path, seed=0)
    path = tmp_path / "ckpt" / "epoch=2.ckpt"
    loaded = RAReIDModule.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    saved = torch.load(path, weights_only=True)["state_dict"]
    assert loaded.masks.active_flags() == [False, True, True, True]  # phase 3 after epoch 2
    assert loaded.masks.attached
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, saved[key]), key
    assert not any(m.training for m in loaded.modules())  # ready for inference as loaded
    images = torch.randn(3, 3, 64, 32)
    z = loaded.embed(images, [1, 3, 4])
    assert z.shape == (3, 16)
    assert torch.count_nonzero(z[0, 4:]) == 0
