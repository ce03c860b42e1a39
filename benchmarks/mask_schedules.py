"""How far each stage's resolution masks move under each mask/learning-rate schedule.

Trains the quickstart model (ResNet-18, d = 256) on the built-in synthetic set for a few
epochs per schedule, the paper's 120-epoch recipe scaled down, and prints per stage the
mean |logit change| between the stage's fresh initialisation and the end of the fit, in
units of the base learning rate (Adam moves a parameter by about ``lr`` per step). No
accuracy is measured: the point is whether every stage's masks get a training budget.

    rareid synth --out /tmp/synth --identities 60 --seed 0
    nice -n 10 python benchmarks/mask_schedules.py --root /tmp/synth --epochs 12

``--compare init`` instead trains the phases-before-the-first-decay schedule once per
``mask_init`` (gaussian, identity) and prints what the masks learned: per stage, the mean
gate of each level and how much the gates differ between levels.
"""

from __future__ import annotations

import argparse
import json
import time

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from rareid.callbacks.progressive import ProgressiveMaskTraining
from rareid.data.datamodule import ReIDDataModule
from rareid.models.module import RAReIDModule


class PhaseEntry(Callback):
    """Each stage's logits at the start of every epoch (after the schedule ran)."""

    def __init__(self) -> None:
        self.masks: list[list[torch.Tensor]] = []
        self.lrs: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.masks.append([m.logits.detach().clone() for m in pl_module.masks.masks])
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def schedules(epochs: int) -> dict[str, tuple[list[int], dict]]:
    """The paper's proportions at ``epochs``: decays at 1/3 and 7/12, phases every quarter."""
    quarter = epochs // 4
    decays = [round(epochs / 3), round(epochs * 7 / 12)]
    early = max(1, decays[0] // 4)
    return {
        "step, phases after the decays (paper configs before)": (
            [0, quarter, 2 * quarter, 3 * quarter],
            {"lr_schedule": "step", "milestones": decays},
        ),
        "step, phases before the first decay": (
            [0, early, 2 * early, 3 * early],
            {"lr_schedule": "step", "milestones": decays},
        ),
        "per_phase (restart at each phase)": (
            [0, quarter, 2 * quarter, 3 * quarter],
            {
                "lr_schedule": "per_phase",
                "milestones": [round(quarter / 3), round(quarter * 7 / 12)],
            },
        ),
    }


def init_variants(epochs: int) -> dict[str, tuple[list[int], dict]]:
    """The phases-before-the-first-decay schedule with each mask initialisation."""
    starts, options = schedules(epochs)["step, phases before the first decay"]
    return {
        f"mask_init={init}": (starts, {**options, "mask_init": init})
        for init in ("gaussian", "identity")
    }


def gate_summary(module: RAReIDModule) -> list[dict]:
    """Per stage: mean gate of each level (1..m) and the mean over channels of the gates'
    standard deviation across levels (0: the mask ignores the resolution)."""
    summary = []
    for mask in module.masks.masks:
        gates = torch.sigmoid(mask.logits.detach())  # (levels, channels)
        summary.append(
            {
                "mean_gate_by_level": [round(v, 3) for v in gates.mean(dim=1).tolist()],
                "level_spread": round(gates.std(dim=0).mean().item(), 4),
            }
        )
    return summary


def run(
    root: str,
    epochs: int,
    batches: int | None,
    seed: int,
    compare: str = "schedule",
    mask_lr: float | None = None,
) -> list[dict]:
    rows = []
    variants = schedules(epochs) if compare == "schedule" else init_variants(epochs)
    for name, (starts, options) in variants.items():
        if mask_lr is not None:
            name, options = f"{name}, mask_lr={mask_lr:g}", {**options, "mask_lr": mask_lr}
        L.seed_everything(seed, verbose=False)
        data = ReIDDataModule(
            dataset="synthetic",
            root=root,
            input_size=(64, 32),
            padding=3,
            p=8,
            k=4,
            num_workers=0,
            seed=seed,
        )
        data.setup("fit")
        module = RAReIDModule(
            backbone="resnet18",
            num_classes=data.num_classes,
            embedding_dim=256,
            embedding_norm=True,
            img_size=(64, 32),
            lr=1e-3,
            **options,
        )
        probe = PhaseEntry()
        trainer = L.Trainer(
            accelerator="cpu",
            max_epochs=epochs,
            limit_train_batches=batches,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[ProgressiveMaskTraining(phase_epochs=starts, init_seed=seed), probe],
        )
        began = time.perf_counter()
        trainer.fit(module, datamodule=data)
        stages = len(module.masks)
        moved = []
        for stage in range(stages):
            initial = probe.masks[starts[stages - 1 - stage]][stage]
            change = (module.masks.masks[stage].logits.detach() - initial).abs().mean()
            moved.append(round(change.item() / module.hparams.lr, 2))
        rows.append(
            {
                "schedule": name,
                "phase_epochs": starts,
                "milestones": list(options["milestones"]),
                "moved_in_lr_units_by_stage": moved,
                "lr_by_epoch": [round(lr / module.hparams.lr, 4) for lr in probe.lrs],
                "seconds": round(time.perf_counter() - began, 1),
                "gates_by_stage": gate_summary(module),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="synthetic dataset folder (rareid synth)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batches", type=int, default=None, help="limit batches per epoch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compare", choices=["schedule", "init"], default="schedule")
    parser.add_argument("--mask-lr", type=float, default=None, help="model.mask_lr (default lr)")
    args = parser.parse_args()
    rows = run(args.root, args.epochs, args.batches, args.seed, args.compare, args.mask_lr)
    print("\nmean |logit change| / lr, stages layer1 .. layer4:")
    for row in rows:
        print(f"  {row['schedule']:<55} {row['moved_in_lr_units_by_stage']}")
    print("\nlevel spread of the gates (std over levels, mean over channels), layer1 .. layer4:")
    for row in rows:
        spread = [stage["level_spread"] for stage in row["gates_by_stage"]]
        print(f"  {row['schedule']:<55} {spread}")


if __name__ == "__main__":
    main()
