"""What the resolution masks of trained checkpoints learned, measured against their start.

For every stage of every checkpoint: the mean |logit - initial logit| (the initialisation is
reproduced exactly with ``StageMask.reset_parameters`` and the generator the progressive
callback gives that stage), the mean gate of each level (level 1 = lowest resolution first),
and how much the gates of the same channel differ between levels (mean over channels of the
std over levels). Gates drawn around 0.5 that never moved differ between levels by ~0.19
(independent sigmoid(N(0, 1)) draws), so that spread alone says nothing; the travel says
whether the masks trained. End-to-end masks are never re-initialised by the callback: they
start from the model's construction draw (the global RNG), so their travel is not reported.

    python benchmarks/mask_travel.py runs/benchmark/*/seed0/checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from rareid.callbacks.progressive import ProgressiveMaskTraining
from rareid.models.masks import StageMask


def describe(path: Path, init_seed: int) -> list[str]:
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    options = checkpoint["hyper_parameters"]
    if not options.get("use_masks", True):
        return [f"{path}: no masks"]
    state = checkpoint["state_dict"]
    schedule = ProgressiveMaskTraining(init_seed=init_seed)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument(
        "--init-seed", type=int, default=0, help="the fit's progressive.init_seed (default 0)"
    )
    args = parser.parse_args()
    for path in args.checkpoints:
        print("\n".join(describe(path, args.init_seed)))


if __name__ == "__main__":
    main()
