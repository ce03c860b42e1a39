"""Option and input checks of ``RAReIDModule``: every bad value is a ``ValueError`` that names
it, before anything is built or computed."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

MASK_SCHEDULES = ("progressive", "end_to_end")
#: The learning rates and weights :func:`check_optimisation_options` checks.
OPTIMISATION_OPTIONS = (
    "lr",
    "mask_lr",
    "weight_decay",
    "gamma",
    "verif_weight",
    "label_smoothing",
    "warmup_epochs",
)


def check_training_options(mask_schedule: str, use_cls_loss: bool, use_verif_loss: bool) -> None:
    if mask_schedule not in MASK_SCHEDULES:
        raise ValueError(f"mask_schedule must be one of {MASK_SCHEDULES}, got {mask_schedule!r}")
    if not (use_cls_loss or use_verif_loss):
        raise ValueError("use_cls_loss and use_verif_loss are both off: nothing to train")


def check_query_subvectors(
    query_subvectors: int | None, varying_length: bool, num_levels: int
) -> None:
    if query_subvectors is not None and not (
        varying_length and 1 <= query_subvectors <= num_levels
    ):
        raise ValueError(
            f"query_subvectors={query_subvectors}: expected 1..{num_levels} sub-vectors "
            "on a model with varying_length=true (without it every query uses the whole "
            "vector)"
        )


def check_optimisation_options(**options: float | None) -> None:
    """Learning rates, decay and loss weights: finite and in range, or a ``ValueError``.

    A NaN or infinite value does not fail by itself: it turns every weight into NaN at the
    first step, and the run goes on producing meaningless results.
    """
    # name -> (lowest allowed, whether the lowest is allowed, highest allowed or None)
    ranges = {
        "lr": (0.0, False, None),
        "mask_lr": (0.0, True, None),  # 0 keeps the masks at their initialisation
        "weight_decay": (0.0, True, None),
        "gamma": (0.0, False, None),
        "verif_weight": (0.0, True, None),
        "label_smoothing": (0.0, True, 1.0),
        "warmup_epochs": (0.0, True, None),
    }
    for name, value in options.items():
        if value is None:  # mask_lr: follows lr
            continue
        low, low_allowed, high = ranges[name]
        number = float(value)
        below = number < low or (number == low and not low_allowed)
        if not math.isfinite(number) or below or (high is not None and number >= high):
            wanted = f"{'>=' if low_allowed else '>'} {low:g}" + (
                f" and < {high:g}" if high is not None else ""
            )
            raise ValueError(f"{name}: expected a finite number {wanted}, got {value}")


def level_index(
    levels: torch.Tensor | Sequence[int],
    rates: Sequence[float],
    device: torch.device | str,
    count: int | None = None,
    name: str = "levels",
) -> torch.Tensor:
    """Levels (1..m, m = ``len(rates)``) as a long tensor of shape ``(count,)``."""
    num_levels = len(rates)
    values = torch.as_tensor(levels, device=device)
    expected = f"({'N' if count is None else count},)"
    if values.ndim != 1 or (count is not None and values.shape[0] != count):
        raise ValueError(
            f"{name}: expected shape {expected}, one level (1..{num_levels}) per image, "
            f"got shape {tuple(values.shape)}"
        )
    if values.dtype == torch.bool or values.is_complex():
        raise ValueError(f"{name}: expected integer levels, got dtype {values.dtype}")
    if values.is_floating_point() and not bool(torch.all(values == values.round())):
        raise ValueError(
            f"{name}: expected whole-number levels 1..{num_levels} of shape "
            f"{expected}, got non-integer values {values[values != values.round()][:3].tolist()}"
        )
    if values.numel() and (values.min() < 1 or values.max() > num_levels):
        raise ValueError(
            f"levels must be in 1..{num_levels} (rates {list(rates)}), got "
            f"{values.min().item()}..{values.max().item()}"
        )
    return values.long()


def check_images(images: torch.Tensor, img_size: Sequence[int]) -> None:
    """Images as ``embed`` expects them: float (N, 3, H, W) at the model's input size."""
    height, width = (int(side) for side in img_size)
    expected = f"a float tensor of shape (N, 3, {height}, {width}), normalised like training"
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images: expected {expected}, got {type(images).__name__}")
    if not images.is_floating_point():
        raise ValueError(
            f"images: expected {expected}, got dtype {images.dtype} (convert to float and "
            "normalise with the model's mean and std first)"
        )
    if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[2:]) != (height, width):
        raise ValueError(
            f"images: expected {expected} (img_size {height}x{width}, RGB), got shape "
            f"{tuple(images.shape)}"
        )
