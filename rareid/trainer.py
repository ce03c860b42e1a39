"""``RAReIDTrainer``: Lightning's Trainer that also understands ``precision: auto``."""

from __future__ import annotations

from typing import Any, Literal

import torch
from lightning.fabric.plugins.precision.precision import _PRECISION_INPUT
from lightning.pytorch import Trainer
from lightning.pytorch.utilities import rank_zero_only

from rareid.runtime import resolve_precision

__all__ = ["RAReIDTrainer"]


def _cuda_bf16() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


@rank_zero_only
def _say(message: str) -> None:
    print(message, flush=True)


class RAReIDTrainer(Trainer):
    """A Trainer whose ``precision`` may be ``auto``: bf16-mixed where it pays, else float32.

    bf16 autocast speeds a CPU step up only where the CPU has AMX or AVX512-BF16; elsewhere it
    is emulated and many times slower, so one config cannot pin either precision for every
    machine. The choice and its reason are printed once.
    """

    def __init__(
        self,
        *args: Any,
        precision: _PRECISION_INPUT | Literal["auto"] | None = None,
        **kwargs: Any,
    ) -> None:
        if precision == "auto":
            accelerator = kwargs.get("accelerator", "auto")
            name = accelerator if isinstance(accelerator, str) else type(accelerator).__name__
            precision, reason = resolve_precision(name, cuda_bf16=_cuda_bf16())
            _say(f"precision auto: {precision} ({reason})")
        super().__init__(*args, precision=precision, **kwargs)
