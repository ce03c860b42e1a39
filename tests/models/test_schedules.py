"""Learning-rate factors of the per-phase schedule."""

from __future__ import annotations

import pytest

from rareid.models.schedules import phase_step_factor


def test_single_phase_is_the_plain_step_decay() -> None:
    factors = [phase_step_factor(e, [0], [2, 4], 0.1) for e in range(6)]
    assert factors == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_milestones_count_from_each_phase_start() -> None:
    starts = [0, 3, 3, 7]  # equal starts: one phase in practice
    factors = [phase_step_factor(e, starts, [1, 2], 0.5) for e in range(10)]
    assert factors == pytest.approx([1, 0.5, 0.25, 1, 0.5, 0.25, 0.25, 1, 0.5, 0.25])
