"""Two-process CPU DDP fit across mask-phase boundaries: ranks end with identical parameters.

The test runs this file as a script; Lightning's DDP launcher then starts the second
rank by re-running the same command (the way ``rareid fit`` runs under DDP), which
works reliably from pytest where spawning from inside the test process does not.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
PHASE_EPOCHS = [0, 1, 2, 3]
MAX_EPOCHS = 4  # every phase starts before max_epochs ...
EPOCHS_RUN = 3  # ... but the fit stops (max_steps) after phases 1, 2, 3: two phase switches


def run_rank(out_dir: Path) -> None:
    """Body of each DDP process: fit, then save this rank's final state."""
    import lightning as L
    from lightning.pytorch.callbacks import Callback
    from lightning.pytorch.strategies import DDPStrategy

    from rareid.callbacks.progressive import ProgressiveMaskTraining
    from rareid.models.module import RAReIDModule
    from tests.helpers import RandomReIDDataModule, quiet_trainer_kwargs, tiny_module_kwargs

    class SaveState(Callback):
        def __init__(self, schedule: ProgressiveMaskTraining) -> None:
            self.schedule = schedule
            self.epoch_start_masks: list[list[torch.Tensor]] = []
            self.batches: list[list[int]] = []

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self.epoch_start_masks.append(
                [m.logits.detach().clone() for m in pl_module.masks.masks]
            )

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            self.batches.append(batch["pid"].tolist() + batch["lr_level"].tolist())

        def on_fit_end(self, trainer, pl_module) -> None:
            torch.save(
                {
                    "state_dict": {k: v.detach().cpu() for k, v in pl_module.state_dict().items()},
                    "phase": self.schedule.phase,
                    "active": pl_module.masks.active_flags(),
                    "epoch_start_masks": self.epoch_start_masks,
                    "batches": self.batches,
                    "world_size": trainer.world_size,
                    "global_step": trainer.global_step,
                },
                out_dir / f"rank{trainer.global_rank}.pt",
            )

    # Different seeds per rank on purpose: DDP must broadcast rank 0's initial weights,
    # and the fresh mask initialisations must come from the callback's own seed.
    L.seed_everything(int(os.environ.get("LOCAL_RANK", "0")) + 10, verbose=False)
    module = RAReIDModule(**tiny_module_kwargs())
    schedule = ProgressiveMaskTraining(phase_epochs=PHASE_EPOCHS, init_seed=3)
    trainer = L.Trainer(
        callbacks=[schedule, SaveState(schedule)],
        **quiet_trainer_kwargs(
            out_dir,
            devices=2,
            strategy=DDPStrategy(find_unused_parameters=False, process_group_backend="gloo"),
            max_epochs=MAX_EPOCHS,
            max_steps=EPOCHS_RUN * 2,
            limit_train_batches=2,
        ),
    )
    trainer.fit(module, datamodule=RandomReIDDataModule(size=16, batch_size=4))


@pytest.mark.e2e
def test_two_process_ddp_fit_across_phases_keeps_ranks_identical(tmp_path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    result = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]

    assert all(r["world_size"] == 2 for r in ranks)
    assert all(r["global_step"] == EPOCHS_RUN * 2 for r in ranks)
    # The ranks saw different samples, so equal weights mean gradients were all-reduced.
    assert ranks[0]["batches"] != ranks[1]["batches"]
    assert ranks[0]["state_dict"].keys() == ranks[1]["state_dict"].keys()
    for key, value in ranks[0]["state_dict"].items():
        if "num_batches_tracked" in key or "running_" in key:
            continue  # BatchNorm statistics are per rank (no SyncBatchNorm)
        assert torch.equal(value, ranks[1]["state_dict"][key]), key

    for rank in ranks:
        assert rank["phase"] == 3
        assert rank["active"] == [False, True, True, True]
        starts = rank["epoch_start_masks"]
        final = rank["state_dict"]
        # Stage 3 trained in epoch 0 only, stage 2 in epoch 1 only: frozen afterwards.
        assert torch.equal(final["masks.masks.3.logits"], starts[1][3])
        assert torch.equal(final["masks.masks.2.logits"], starts[2][2])
        assert not torch.equal(starts[0][3], starts[1][3])
        assert not torch.equal(final["masks.masks.1.logits"], starts[2][1])
        assert torch.equal(final["masks.masks.0.logits"], starts[0][0])  # never active


if __name__ == "__main__":
    run_rank(Path(sys.argv[1]))
