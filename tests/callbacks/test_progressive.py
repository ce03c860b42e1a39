"""ProgressiveMaskTraining: phases, freezing, fresh initialisation, checkpoint state (Alg. 1)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from rareid.callbacks.progressive import ProgressiveMaskTraining, even_phase_starts
from rareid.models.module import RAReIDModule
from tests.helpers import RandomReIDDataModule, quiet_trainer_kwargs, tiny_module_kwargs

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.filterwarnings(
        "ignore:You defined a `validation_step` but have no `val_dataloader`"
    ),
]

NUM_STAGES = 4  # resnet18: layer1..layer4; stage 3 is next to the output


class Recorder(Callback):
    """Snapshots of the masks at every epoch start (after the schedule ran) and every step."""

    def __init__(self, schedule: ProgressiveMaskTraining) -> None:
        self.schedule = schedule
        self.epochs: list[dict] = []
        self.steps: list[dict] = []
        self.at_train_start: dict | None = None

    @staticmethod
    def _masks(pl_module) -> list[torch.Tensor]:
        return [m.logits.detach().clone() for m in pl_module.masks.masks]

    def on_train_start(self, trainer, pl_module) -> None:
        self.at_train_start = {
            "phase": self.schedule.phase,
            "active": pl_module.masks.active_flags(),
            "masks": self._masks(pl_module),
        }

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.epochs.append(
            {
                "epoch": trainer.current_epoch,
                "phase": self.schedule.phase,
                "active": pl_module.masks.active_flags(),
                "masks": self._masks(pl_module),
                "lr": trainer.optimizers[0].param_groups[0]["lr"],
            }
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps.append(
            {
                "epoch": trainer.current_epoch,
                "masks": self._masks(pl_module),
                "fc": pl_module.head.fc.weight.detach().clone(),
            }
        )


def fit(
    tmp_path,
    max_epochs: int,
    phase_epochs=None,
    init_seed: int = 0,
    seed: int = 0,
    batches: int = 1,
    module_kwargs: dict | None = None,
    ckpt_path: str | None = None,
    **trainer_kwargs,
) -> tuple[RAReIDModule, ProgressiveMaskTraining, Recorder, L.Trainer]:
    L.seed_everything(seed, verbose=False)
    module = RAReIDModule(**tiny_module_kwargs(**(module_kwargs or {})))
    schedule = ProgressiveMaskTraining(phase_epochs=phase_epochs, init_seed=init_seed)
    recorder = Recorder(schedule)
    trainer = L.Trainer(
        callbacks=[schedule, recorder],
        **quiet_trainer_kwargs(
            tmp_path, max_epochs=max_epochs, limit_train_batches=batches, **trainer_kwargs
        ),
    )
    trainer.fit(module, datamodule=RandomReIDDataModule(size=12, batch_size=4), ckpt_path=ckpt_path)
    return module, schedule, recorder, trainer


def expected_active(phase: int) -> list[bool]:
    return [stage >= NUM_STAGES - phase for stage in range(NUM_STAGES)]


def test_even_phase_starts() -> None:
    assert even_phase_starts(4, 4) == [0, 1, 2, 3]
    assert even_phase_starts(120, 4) == [0, 30, 60, 90]
    assert even_phase_starts(6, 4) == [0, 1, 3, 4]


def test_phases_switch_at_the_given_epochs(tmp_path) -> None:
    module, schedule, recorder, _ = fit(tmp_path, max_epochs=5, phase_epochs=[0, 2, 2, 3])
    phases = [e["phase"] for e in recorder.epochs]
    assert phases == [1, 1, 3, 4, 4]  # equal starts pass through phase 2 at once
    for record in recorder.epochs:
        assert record["active"] == expected_active(record["phase"])
    assert recorder.at_train_start["phase"] == 0
    assert recorder.at_train_start["active"] == [False] * NUM_STAGES
    assert schedule.phase == 4 and module.masks.active_flags() == [True] * NUM_STAGES


def test_default_phases_split_max_epochs_evenly(tmp_path) -> None:
    _, _, recorder, _ = fit(tmp_path, max_epochs=6)
    assert [e["phase"] for e in recorder.epochs] == [1, 2, 2, 3, 4, 4]  # starts 0, 1, 3, 4


def test_frozen_masks_never_move_and_only_the_current_stage_trains(tmp_path) -> None:
    _, _, recorder, _ = fit(tmp_path, max_epochs=4, phase_epochs=[0, 1, 2, 3], batches=3)
    initial = recorder.at_train_start["masks"]
    epoch_start = {e["epoch"]: e["masks"] for e in recorder.epochs}
    previous = None
    for step in recorder.steps:
        epoch = step["epoch"]
        current = NUM_STAGES - 1 - epoch  # phase epoch+1 trains this stage
        before = (
            epoch_start[epoch]
            if previous is None or previous["epoch"] != epoch
            else previous["masks"]
        )
        for stage in range(NUM_STAGES):
            now = step["masks"][stage]
            if stage == current:
                assert not torch.equal(now, before[stage]), (epoch, stage)
            else:
                # Frozen (trained before) and not-yet-active stages: bit-for-bit unchanged.
                assert torch.equal(now, before[stage]), (epoch, stage)
            if stage < current:
                assert torch.equal(now, initial[stage])  # never touched before activation
        previous = step
    # Across each phase switch the stage trained before keeps its last trained value.
    last_of_epoch = {s["epoch"]: s["masks"] for s in recorder.steps}
    for epoch in range(1, 4):
        frozen = NUM_STAGES - epoch
        assert torch.equal(last_of_epoch[3][frozen], last_of_epoch[epoch - 1][frozen])
    # Backbone and heads train in every phase.
    assert all(
        not torch.equal(a["fc"], b["fc"])
        for a, b in zip(recorder.steps[:-1], recorder.steps[1:], strict=True)
    )


def test_new_stage_is_freshly_initialised_from_init_seed(tmp_path) -> None:
    options = {"max_epochs": 4, "max_steps": 2, "phase_epochs": [0, 1, 2, 3]}
    kwargs = {"mask_init_mean": 3.0, "mask_init_std": 0.5}
    _, _, run_a, _ = fit(tmp_path / "a", seed=1, init_seed=5, module_kwargs=kwargs, **options)
    _, _, run_b, _ = fit(tmp_path / "b", seed=2, init_seed=5, module_kwargs=kwargs, **options)
    _, _, run_c, _ = fit(tmp_path / "c", seed=1, init_seed=6, module_kwargs=kwargs, **options)
    for epoch, stage in ((0, 3), (1, 2)):
        new_a = run_a.epochs[epoch]["masks"][stage]
        # A fresh draw, not the value the module was built with ...
        assert not torch.equal(new_a, run_a.at_train_start["masks"][stage])
        # ... that depends on init_seed only (model seeds 1 and 2 differ).
        assert not torch.equal(
            run_a.at_train_start["masks"][stage], run_b.at_train_start["masks"][stage]
        )
        assert torch.equal(new_a, run_b.epochs[epoch]["masks"][stage])
        assert not torch.equal(new_a, run_c.epochs[epoch]["masks"][stage])
        # Gaussian with the module's mask_init_mean / mask_init_std.
        assert abs(new_a.mean().item() - 3.0) < 0.1
        assert abs(new_a.std().item() - 0.5) < 0.1


def test_default_initialisation_is_drawn_from_the_run_seed(tmp_path) -> None:
    options = {"max_epochs": 2, "max_steps": 2, "phase_epochs": [0, 1, 1, 1], "init_seed": None}
    with pytest.warns(UserWarning, match="phase"):
        _, schedule, run_a, _ = fit(tmp_path / "a", seed=1, **options)
        _, _, run_b, _ = fit(tmp_path / "b", seed=1, **options)
        _, _, run_c, _ = fit(tmp_path / "c", seed=2, **options)
    assert schedule.init_seed == 1  # resolved from seed_everything, saved in checkpoints
    assert schedule.state_dict()["init_seed"] == 1
    fresh = [run.epochs[1]["masks"][2] for run in (run_a, run_b, run_c)]
    assert torch.equal(fresh[0], fresh[1])
    assert not torch.equal(fresh[0], fresh[2])


def test_phase_is_saved_in_and_restored_from_checkpoints(tmp_path) -> None:
    options = {"max_epochs": 4, "phase_epochs": [0, 1, 2, 3]}
    _, schedule, _, trainer = fit(tmp_path / "first", max_steps=2, **options)
    assert schedule.phase == 2
    path = tmp_path / "mid.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["callbacks"]["ProgressiveMaskTraining"]["phase"] == 2
    saved_masks = [checkpoint["state_dict"][f"masks.masks.{s}.logits"] for s in range(NUM_STAGES)]

    resumed, schedule2, recorder, _ = fit(
        tmp_path / "resumed", max_steps=3, ckpt_path=str(path), **options
    )
    assert recorder.at_train_start["phase"] == 2
    assert recorder.at_train_start["active"] == expected_active(2)
    assert [e["epoch"] for e in recorder.epochs] == [2]
    assert recorder.epochs[0]["phase"] == 3 and schedule2.phase == 3
    start = recorder.epochs[0]["masks"]
    # Phase 2's stage is restored, not re-initialised; phase 3's stage is freshly drawn.
    assert torch.equal(start[2], saved_masks[2]) and torch.equal(start[3], saved_masks[3])
    assert not torch.equal(start[1], saved_masks[1])
    assert resumed.masks.active_flags() == expected_active(3)


@pytest.mark.parametrize(
    "phase_epochs",
    [[1, 2, 3, 4], [0, 2, 1, 3], [0, 1, 2], [0, 1, 2, 3, 4]],
    ids=["first-not-zero", "decreasing", "too-few", "too-many"],
)
def test_bad_phase_epochs_are_rejected(tmp_path, phase_epochs) -> None:
    with pytest.raises(ValueError, match="phase_epochs"):
        fit(tmp_path, max_epochs=4, phase_epochs=phase_epochs)


def test_phase_epochs_beyond_max_epochs_is_an_error(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"phase_epochs=\[0, 1, 2, 3\].*max_epochs=3"):
        fit(tmp_path, max_epochs=3, phase_epochs=[0, 1, 2, 3])


def test_phase_starts_can_be_checked_before_a_fit() -> None:
    schedule = ProgressiveMaskTraining(phase_epochs=[0, 30, 60, 90])
    assert schedule.resolve_phase_starts(120, 4) == [0, 30, 60, 90]
    with pytest.raises(ValueError, match=r"epoch 90, but trainer.max_epochs=60"):
        schedule.resolve_phase_starts(60, 4)
    assert ProgressiveMaskTraining().resolve_phase_starts(8, 4) == [0, 2, 4, 6]


def test_a_phase_without_an_epoch_is_named_in_a_warning(tmp_path) -> None:
    with pytest.warns(UserWarning, match=r"stage\(s\) \[2\] \(0-based\) get no epoch"):
        fit(tmp_path, max_epochs=3, phase_epochs=[0, 1, 1, 2])


def mask_movement(module: RAReIDModule, recorder: Recorder, starts: list[int]) -> list[float]:
    """Mean |logit change| of each stage between its phase's fresh init and the end of the fit."""
    moved = []
    for stage in range(NUM_STAGES):
        start = starts[NUM_STAGES - 1 - stage]
        initial = recorder.epochs[start]["masks"][stage]
        moved.append((module.masks.masks[stage].logits.detach() - initial).abs().mean().item())
    return moved


LR = 1e-3
SCHEDULES = {
    # Phases after the decays (the paper configs' 0/30/60/90 vs 40/70, scaled down).
    "step-phases-after-decays": ([0, 2, 4, 6], {"milestones": [3, 5], "lr_schedule": "step"}),
    "step-phases-before-first-decay": (
        [0, 1, 2, 3],
        {"milestones": [5, 7], "lr_schedule": "step"},
    ),
    "per-phase": ([0, 2, 4, 6], {"milestones": [1], "lr_schedule": "per_phase"}),
}


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_every_stage_masks_train_unless_phases_start_after_the_decays(tmp_path, name) -> None:
    starts, options = SCHEDULES[name]
    module, _, recorder, _ = fit(
        tmp_path,
        max_epochs=8,
        phase_epochs=starts,
        batches=2,
        module_kwargs={"lr": LR, "gamma": 0.1, **options},
    )
    moved = mask_movement(module, recorder, starts)
    # Adam moves a parameter by about lr per step at full rate: half of one such step is the
    # least a trained stage shows; one at a hundredth of the rate stays far below it.
    if name == "step-phases-after-decays":
        assert moved[0] < 0.1 * LR, moved  # the layer-1 masks start at lr / 100: stuck
        assert moved[3] > 0.5 * LR, moved
    else:
        assert min(moved) > 0.5 * LR, moved


def test_per_phase_schedule_restarts_the_learning_rate_at_every_phase(tmp_path) -> None:
    module_kwargs = {"lr": LR, "gamma": 0.1, "milestones": [1, 2], "lr_schedule": "per_phase"}
    _, _, recorder, _ = fit(
        tmp_path, max_epochs=7, phase_epochs=[0, 3, 3, 5], module_kwargs=module_kwargs
    )
    factors = [round(epoch["lr"] / LR, 6) for epoch in recorder.epochs]
    assert factors == [1.0, 0.1, 0.01, 1.0, 0.1, 1.0, 0.1]
    # End-to-end masks: one phase, so per_phase is the plain step decay.
    module_kwargs["mask_schedule"] = "end_to_end"
    _, _, recorder, _ = fit(tmp_path / "e2e", max_epochs=4, module_kwargs=module_kwargs)
    assert [round(e["lr"] / LR, 6) for e in recorder.epochs] == [1.0, 0.1, 0.01, 0.01]


def test_per_phase_schedule_resumes_in_step(tmp_path) -> None:
    options = {
        "max_epochs": 4,
        "phase_epochs": [0, 2, 2, 3],
        "module_kwargs": {"lr": LR, "milestones": [1], "lr_schedule": "per_phase"},
    }
    _, _, _, trainer = fit(tmp_path / "first", max_steps=2, **options)
    path = tmp_path / "mid.ckpt"
    trainer.save_checkpoint(path)
    _, _, recorder, _ = fit(tmp_path / "resumed", ckpt_path=str(path), **options)
    assert [round(e["lr"] / LR, 6) for e in recorder.epochs] == [1.0, 1.0]  # epochs 2 and 3


def test_block_masks_train_stage_by_stage(tmp_path) -> None:
    module, _, recorder, _ = fit(
        tmp_path,
        max_epochs=4,
        max_steps=2,
        phase_epochs=[0, 1, 2, 3],
        batches=2,
        module_kwargs={"mask_granularity": "block"},
    )
    start = recorder.epochs[0]["masks"]
    for stage in range(NUM_STAGES):
        final = module.masks.masks[stage].logits.detach()
        assert final.shape[0] == 2  # resnet18: two blocks per stage
        moved = [not torch.equal(final[block], start[stage][block]) for block in range(2)]
        # Phase 1: every block mask of the output stage trains, the other stages wait.
        assert moved == ([True, True] if stage == NUM_STAGES - 1 else [False, False])


def test_default_phases_need_max_epochs(tmp_path) -> None:
    with pytest.raises(ValueError, match="max_epochs"):
        fit(tmp_path, max_epochs=-1, max_steps=2)


def test_masks_without_the_callback_is_a_clear_error(tmp_path) -> None:
    module = RAReIDModule(**tiny_module_kwargs())
    trainer = L.Trainer(**quiet_trainer_kwargs(tmp_path, max_epochs=1, limit_train_batches=1))
    with pytest.raises(RuntimeError, match="ProgressiveMaskTraining"):
        trainer.fit(module, datamodule=RandomReIDDataModule(size=4, batch_size=4))


def test_callback_is_a_no_op_without_masks(tmp_path) -> None:
    L.seed_everything(0, verbose=False)
    module = RAReIDModule(**tiny_module_kwargs(use_masks=False))
    schedule = ProgressiveMaskTraining()
    trainer = L.Trainer(
        callbacks=[schedule], **quiet_trainer_kwargs(tmp_path, max_epochs=2, limit_train_batches=1)
    )
    trainer.fit(module, datamodule=RandomReIDDataModule(size=4, batch_size=4))
    assert schedule.phase == 0
    assert trainer.global_step == 2
