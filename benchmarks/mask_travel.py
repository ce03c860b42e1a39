"""What the resolution masks of trained checkpoints learned, measured against their start.

For every stage of every checkpoint: the mean |logit - initial logit| (the initialisation is
reproduced exactly with ``StageMask.reset_parameters`` and the generator the progressive
callback gives that stage), the mean gate of each level (level 1 = lowest resolution first),
and how much the gates of the same channel differ between levels (mean over channels of the
std over levels). Gates drawn around 0.5 that never moved differ between levels by ~0.19
(independent sigmoid(N(0, 1)) draws), so that spread alone says nothing; the travel says
whether the masks trained. End-to-end masks are never re-initialised by the callback: they
start from the model's construction draw (the global RNG), so their travel is not reported.

``--gradients N`` also measures the share of the gradient signal the masks get: the checkpoint's
model and training data (rebuilt from the hyper-parameters saved in it; run from the folder the
fit ran in) take N training batches with every stage's masks active, and per stage the RMS
gradient of the mask logits of each level is printed beside the RMS gradient of the stage's own
weights. Adam rescales each parameter's step by its own gradient history, so a small ratio does
not stop a mask from moving; a level whose rows get no gradient at all (no training view of
that level) cannot move.

How the sigmoid is applied: Eq. 3 of the paper multiplies a stage output by Sigmoid(M_k) of
real-valued parameters M, and the text adds that "the sigmoid function should be applied on the
resolution masks after each updating of the masking weights". The code reads this as Eq. 3
states it: the logits M are the parameters, the gate sigmoid(M) is recomputed from them in every
forward pass, i.e. after every update. The other reading, a projection M <- sigmoid(M) applied
in place after each optimizer step with the stage output multiplied by M itself, would pull every
entry towards the fixed point of x = sigmoid(x) (about 0.66) at every step and, composed with
Eq. 3's own sigmoid, leave gates within a few hundredths of 0.66: no room to adapt per level.

    python benchmarks/mask_travel.py runs/benchmark/*/seed0/checkpoints/last.ckpt
    python benchmarks/mask_travel.py runs/benchmark/rareid-full/seed0/checkpoints/last.ckpt \
        --gradients 4
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from rareid.callbacks.progressive import ProgressiveMaskTraining
from rareid.models.masks import StageMask


def describe(path: Path, init_seed: int | None) -> list[str]:
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    options = checkpoint["hyper_parameters"]
    if not options.get("use_masks", True):
        return [f"{path}: no masks"]
    state = checkpoint["state_dict"]
    if init_seed is None:  # the seed the fit drew its masks from, saved with its phase
        saved = checkpoint.get("callbacks", {}).get("ProgressiveMaskTraining", {})
        init_seed = saved.get("init_seed")
    schedule = ProgressiveMaskTraining(init_seed=0 if init_seed is None else init_seed)
    init = options.get("mask_init", "gaussian")
    progressive = options.get("mask_schedule", "progressive") == "progressive"
    lines = [f"{path} (mask_init {init}, mask_lr {options.get('mask_lr')})"]
    stage = 0
    while f"masks.masks.{stage}.logits" in state:
        logits = state[f"masks.masks.{stage}.logits"].float()
        start = StageMask(
            num_levels=logits.shape[-2],
            channels=logits.shape[-1],
            channel_dim=1,
            init_mean=float(options.get("mask_init_mean", 0.0)),
            init_std=float(options.get("mask_init_std", 1.0)),
            init=init,
            num_blocks=logits.shape[0] if logits.ndim == 3 else None,
        )
        start.reset_parameters(schedule.stage_generator(stage))
        travel = (logits - start.logits.detach()).abs()
        moved = (
            f"travel {travel.mean():.3f} (max {travel.max():.2f})"
            if progressive or init == "identity"
            else "travel n/a (end to end: unknown start)"
        )
        gates = torch.sigmoid(logits)
        per_level = " ".join(f"{value:.2f}" for value in gates.mean(-1).flatten().tolist())
        lines.append(
            f"  stage {stage}: {moved}; mean gate per level {per_level}; "
            f"between-level spread {gates.std(-2).mean():.3f}"
        )
        stage += 1
    return lines


def _rms(tensor: torch.Tensor | None) -> float:
    return 0.0 if tensor is None else float(tensor.float().pow(2).mean().sqrt())


def gradient_shares(path: Path, batches: int) -> list[str]:
    """RMS gradient of each stage's mask logits per level, against the stage's weights."""
    from rareid.data.datamodule import ReIDDataModule
    from rareid.models.module import RAReIDModule

    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    model = RAReIDModule.load_from_checkpoint(path, map_location="cpu").train()
    if model.masks is None:
        return []
    for mask in model.masks.masks:
        mask.active.fill_(True)  # the end of progressive training: every stage masked
    options = checkpoint["datamodule_hyper_parameters"]
    data = ReIDDataModule(**{k: v for k, v in options.items() if not k.startswith("_")})
    data.setup("fit")
    loader = iter(data.train_dataloader())
    model.zero_grad(set_to_none=True)
    for _ in range(batches):
        model.training_step(next(loader), 0).backward()
    lines = [f"  gradients over {batches} training batches (RMS; levels 1..m, m = HR):"]
    for stage, (info, mask) in enumerate(
        zip(model.backbone.stages, model.masks.masks, strict=True)
    ):
        name = info.name
        weights = [
            p.grad for n, p in model.backbone.model.named_parameters() if n.startswith(f"{name}.")
        ]
        weight_rms = _rms(torch.cat([g.flatten() for g in weights if g is not None]))
        grad = mask.logits.grad
        per_level = [_rms(grad[..., level, :]) for level in range(grad.shape[-2])]
        lines.append(
            f"  stage {stage} ({name}): mask logits "
            + " ".join(f"{value:.2e}" for value in per_level)
            + f"; stage weights {weight_rms:.2e}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument(
        "--init-seed",
        type=int,
        default=None,
        help="the fit's mask initialisation seed (default: the one saved in the checkpoint)",
    )
    parser.add_argument(
        "--gradients", type=int, default=0, metavar="N", help="also measure gradients on N batches"
    )
    args = parser.parse_args()
    for path in args.checkpoints:
        print("\n".join(describe(path, args.init_seed)))
        if args.gradients:
            print("\n".join(gradient_shares(path, args.gradients)))


if __name__ == "__main__":
    main()
