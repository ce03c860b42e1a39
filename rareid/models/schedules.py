"""Learning-rate schedules: the paper's step decay over the whole fit, or one per mask phase.

Progressive mask training activates one backbone stage's masks per phase. Under a single
step decay, the phases that start after a decay train their masks at a tenth or a
hundredth of the learning rate, so those masks barely leave their random initialisation.
The per-phase schedule restarts the learning rate at every phase start and decays it
within the phase, so each stage gets the same budget (Algorithm 1: T iterations each).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

LRSchedule = Literal["step", "per_phase", "cosine"]


class MaskPhaseSchedule:
    """The trainer callback that drives the mask phases, as the module sees it.

    ``rareid.callbacks.progressive.ProgressiveMaskTraining`` (one floor up) is one; the module
    looks for an instance of this base among the trainer's callbacks, so it need not import the
    callbacks package.
    """

    @property
    def phase_starts(self) -> list[int]:
        """First epoch of each phase (empty until the fit has resolved them)."""
        raise NotImplementedError


def phase_step_factor(
    epoch: int, phase_starts: Sequence[int], milestones: Sequence[int], gamma: float
) -> float:
    """Learning-rate multiplier at ``epoch`` with ``milestones`` counted from each phase start.

    ``gamma`` to the power of the milestones passed since the current phase began; with a
    single phase starting at 0 this is the plain step decay.
    """
    current_start = max((start for start in phase_starts if start <= epoch), default=0)
    offset = epoch - current_start
    return float(gamma) ** sum(1 for milestone in milestones if milestone <= offset)


def warmup_cosine_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Learning-rate multiplier at optimiser ``step``: a linear warm-up, then one cosine to 0.

    Unlike a step decay late in the fit, the rate falls all along, so a short budget ends at a
    low rate (where the fit settles) without waiting for a milestone; the warm-up keeps the
    first steps of a higher peak rate from wrecking a warm-started backbone.
    """
    total = max(int(total_steps), 1)
    warmup = min(max(int(warmup_steps), 0), total - 1)
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress))
