"""A fit stopped after some epochs and resumed with ``--ckpt_path last`` ends with the very
weights of an uninterrupted fit (CPU, ``trainer.deterministic: true``), with or without
DataLoader workers: every random draw of an epoch depends on (seed, epoch) only."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from rareid.cli import main
from tests.helpers import tiny_run_args

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("one_torch_thread")]

EPOCHS = 3


class StopAfterEpochs(Callback):
    """Stop the fit after ``epochs`` epochs, as a kill after that epoch's ``last.ckpt`` would."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("determinism") / "data"
    assert main(["synth", "--out", str(out), "--identities", "12", "--seed", "3"]) == 0
    return out


def _fit(data: Path, run: Path, workers: int, extra: list[str]) -> dict:
    options = {
        "trainer.enable_model_summary": False,
        "trainer.max_epochs": EPOCHS,
        "trainer.limit_train_batches": 3,
        "trainer.check_val_every_n_epoch": 1,
        "trainer.deterministic": True,
        "progressive.phase_epochs": [0, 1, 2, 2],
        "report.rank_list_queries": 1,
        "data.num_workers": workers,
        "data.persistent_workers": workers > 0,
        "seed_everything": 7,
        "data.seed": 7,
    }
    assert main(["fit", *tiny_run_args(data, run, options), *extra]) == 0
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def _assert_same(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert got.keys() == expected.keys()
    differ = [key for key, value in expected.items() if not torch.equal(got[key], value)]
    worst = max(
        ((got[key].double() - expected[key].double()).abs().max().item() for key in differ),
        default=0.0,
    )
    assert not differ, f"{len(differ)} tensors differ (max abs difference {worst}): {differ[:5]}"


@pytest.mark.parametrize("workers", [0, 2])
def test_stopped_and_resumed_fit_equals_uninterrupted_fit(
    data: Path, tmp_path: Path, workers: int
) -> None:
    straight = _fit(data, tmp_path / "straight", workers, [])
    assert straight["epoch"] == EPOCHS - 1
    stop = [
        "--trainer.callbacks+=tests.test_determinism.StopAfterEpochs",
        "--trainer.callbacks.init_args.epochs=1",
    ]
    stopped = _fit(data, tmp_path / "resumed", workers, stop)
    assert stopped["epoch"] == 0  # the "kill" came after the first epoch
    resumed = _fit(data, tmp_path / "resumed", workers, ["--ckpt_path", "last"])
    assert resumed["epoch"] == EPOCHS - 1
    _assert_same(resumed["state_dict"], straight["state_dict"])
