"""EpochSeeding: a fit that draws from the global RNGs in training resumes bit for bit."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from rareid.callbacks.progressive import ProgressiveMaskTraining
from rareid.callbacks.seeding import EpochSeeding, epoch_seed
from rareid.models.module import RAReIDModule
from tests.helpers import RandomReIDDataModule, quiet_trainer_kwargs, tiny_module_kwargs

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no"),
]


class NoisyModule(RAReIDModule):
    """Adds noise from torch's global RNG to the HR views, as dropout or an augmentation would."""

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        batch = {**batch, "hr": batch["hr"] + 0.5 * torch.randn_like(batch["hr"])}
        return super().training_step(batch, batch_idx)


def _fit(root: Path, seed: int, seeding: bool, ckpt_path: str | None = None) -> dict:
    L.seed_everything(seed, verbose=False)
    module = NoisyModule(**tiny_module_kwargs())
    checkpoints = ModelCheckpoint(
        dirpath=root / "ckpt", filename="{epoch}", save_top_k=-1, save_on_train_epoch_end=True
    )
    callbacks = [ProgressiveMaskTraining(), checkpoints] + ([EpochSeeding()] if seeding else [])
    trainer = L.Trainer(
        callbacks=callbacks,
        deterministic=True,
        **quiet_trainer_kwargs(
            root, max_epochs=3, limit_train_batches=2, enable_checkpointing=True
        ),
    )
    trainer.fit(module, datamodule=RandomReIDDataModule(size=12, batch_size=4), ckpt_path=ckpt_path)
    return module.state_dict()


def _differing(got: dict, expected: dict) -> list[str]:
    return [key for key, value in expected.items() if not torch.equal(got[key], value)]


@pytest.mark.parametrize("seeding", [True, False])
def test_resumed_fit_with_global_rng_draws_matches_uninterrupted_fit(
    tmp_path: Path, seeding: bool
) -> None:
    straight = _fit(tmp_path / "straight", seed=0, seeding=seeding)
    middle = tmp_path / "straight" / "ckpt" / "epoch=0.ckpt"
    # Another seed_everything on resume: the run's seed comes back from the checkpoint.
    resumed = _fit(tmp_path / "resumed", seed=99, seeding=seeding, ckpt_path=str(middle))
    differing = _differing(resumed, straight)
    if seeding:
        assert torch.load(middle, weights_only=True)["callbacks"]["EpochSeeding"] == {"seed": 0}
        assert not differing
    else:
        assert differing  # the global RNG restarted from seed 99: without reseeding, it drifts


def test_epoch_seed_depends_on_seed_epoch_and_rank() -> None:
    seeds = {epoch_seed(s, e, r) for s in (0, 1) for e in (0, 1, 2) for r in (0, 1)}
    assert len(seeds) == 12
    assert epoch_seed(5, 3, 1) == epoch_seed(5, 3, 1)
    assert all(0 <= s < 2**63 for s in seeds)
