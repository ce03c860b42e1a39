"""Option checks of :class:`~rareid.data.datamodule.ReIDDataModule`: every bad value is a
``ValueError`` naming the option, raised before any file is read."""

from __future__ import annotations

from typing import Any, get_args

import numpy as np


def check_positive_int(name: str, value: Any, minimum: int = 1, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name}: expected an integer {bound}, got {value}")
    return int(value)


def resolve_eval_rates(
    rates: list[float],
    normalized: list[float],
    eval_rates: list[float] | None,
    naive_rate: float | None,
) -> tuple[float, ...]:
    """The query rates of the evaluation: ``eval_rates`` (default: every rate but 1), or only
    ``naive_rate`` for a model trained at one rate."""
    if eval_rates is None:
        eval_rates = [r for r in normalized if r != 1]
        if not eval_rates:
            raise ValueError(
                f"eval_rates: rates={list(rates)} has no rate other than 1; "
                "set eval_rates explicitly (e.g. [2, 3, 4])"
            )
    if len(eval_rates) == 0:
        raise ValueError("eval_rates: expected at least one rate, e.g. [2, 3, 4]")
    for r in eval_rates:
        if not np.isfinite(float(r)) or float(r) < 1:
            raise ValueError(f"eval_rates: every rate must be >= 1, got {list(eval_rates)}")
    if naive_rate is not None:
        if float(naive_rate) not in normalized:
            raise ValueError(f"naive_rate: {naive_rate} must be one of rates={list(normalized)}")
        return (float(naive_rate),)
    return tuple(float(r) for r in eval_rates)


def resolve_lr_view_rates(
    rates: list[float], normalized: list[float], rates_without_hr: bool, lr_view_hr: bool
) -> tuple[float, ...]:
    """The rates a training LR view is drawn from: those above 1 (the paper's r in {2, 3, 4}),
    1 too with ``lr_view_hr``. ``rates`` without 1 must be asked for (``rates_without_hr``)."""
    if 1.0 not in normalized and not rates_without_hr:
        raise ValueError(
            f"rates: {list(rates)} has no rate 1, so full-resolution images get the level "
            f"of rate {normalized[0]:g}; add 1 to rates, or set rates_without_hr: true "
            "if that is meant"
        )
    drawn = tuple(r for r in normalized if lr_view_hr or r != 1)
    if not drawn:
        raise ValueError(
            f"rates={list(rates)}: no rate above 1 to draw the training LR view from; add "
            "rates (e.g. [1, 2, 3, 4]) or set lr_view_hr: true (both views HR)"
        )
    return drawn


def check_choices(**options: tuple[Any, Any]) -> None:
    """``name=(value, Literal[...])``: the CLI checks these from their types; the same types
    guard the Python API."""
    for name, (value, choices) in options.items():
        if value not in get_args(choices):
            raise ValueError(
                f"{name}: unknown value {value!r}; choose one of {list(get_args(choices))}"
            )
