"""What the resolution masks of trained checkpoints learned, measured against their start.

For every stage of every checkpoint: the mean |logit - initial logit| (the initialisation is
reproduced exactly: ``ProgressiveMaskTraining`` draws a stage's fresh Gaussian logits from
a generator seeded ``init_seed + stage``; ``identity`` masks start at ``IDENTITY_LOGIT``), the
mean gate of each level (level 1 = lowest resolution first), and how much the gates of the
same channel differ between levels (mean over channels of the std over levels). Gates drawn
around 0.5 that never moved differ between levels by ~0.19 (independent sigmoid(N(0, 1))
draws), so that spread alone says nothing; the travel says whether the masks trained.

    python benchmarks/mask_travel.py runs/benchmark/*/seed0/checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from rareid.models.masks import IDENTITY_LOGIT


def initial_logits(
    shape: torch.Size, stage: int, init: str, init_seed: int, mean: float, std: float
):
    if init == "identity":
        return torch.full(shape, IDENTITY_LOGIT)
    generator = torch.Generator().manual_seed(init_seed + stage)
    return torch.randn(shape, generator=generator) * std + mean


def describe(path: Path) -> list[str]:
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    options = checkpoint["hyper_parameters"]
    if not options.get("use_masks", True):
        return [f"{path}: no masks"]
    state = checkpoint["state_dict"]
    init_seed = 0
    for key, value in checkpoint.get("callbacks", {}).items():
        if "ProgressiveMaskTraining" in str(key) and isinstance(value, dict):
            init_seed = int(value.get("init_seed", 0))
    lines = [
        f"{path} (mask_init {options.get('mask_init', 'gaussian')}, "
        f"mask_lr {options.get('mask_lr')})"
    ]
    stage = 0
    while f"masks.masks.{stage}.logits" in state:
        logits = state[f"masks.masks.{stage}.logits"].float()
        start = initial_logits(
            logits.shape,
            stage,
            options.get("mask_init", "gaussian"),
            init_seed,
            float(options.get("mask_init_mean", 0.0)),
            float(options.get("mask_init_std", 1.0)),
        )
        gates = torch.sigmoid(logits)
        per_level = " ".join(f"{value:.2f}" for value in gates.mean(-1).flatten().tolist())
        lines.append(
            f"  stage {stage}: travel {(logits - start).abs().mean():.3f} "
            f"(max {(logits - start).abs().max():.2f}); mean gate per level {per_level}; "
            f"between-level spread {gates.std(-2).mean():.3f}"
        )
        stage += 1
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    for path in parser.parse_args().checkpoints:
        print("\n".join(describe(path)))


if __name__ == "__main__":
    main()
