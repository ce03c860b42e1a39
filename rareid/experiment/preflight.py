"""Check every config file and override of a grid before its first run.

Why: a grid runs for hours; a typo in the fifth variant's override should not surface as a
failed fit after the first four trained. Each config layer and each ``key: value`` override is
checked against the options the ``rareid fit`` sections accept (the signatures of the classes
behind them), without building anything, and every problem is reported, one line each.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from rareid.experiment.grid import Grid

#: Top-level keys of a ``rareid fit`` config that take a value, not a section of options.
SCALAR_KEYS = frozenset({"seed_everything", "ckpt_path", "overwrite"})


@cache
def section_options() -> dict[str, frozenset[str]]:
    """Section name -> the option names its class accepts."""
    from lightning.pytorch import Trainer
    from lightning.pytorch.callbacks import ModelCheckpoint

    from rareid.callbacks.progressive import ProgressiveMaskTraining
    from rareid.callbacks.report import EvaluationReport
    from rareid.callbacks.writer import EmbeddingWriter
    from rareid.data.datamodule import ReIDDataModule
    from rareid.models.module import RAReIDModule

    classes = {
        "trainer": Trainer,
        "model": RAReIDModule,
        "data": ReIDDataModule,
        "progressive": ProgressiveMaskTraining,
        "checkpoint": ModelCheckpoint,
        "report": EvaluationReport,
        "predict_writer": EmbeddingWriter,
    }
    return {
        name: frozenset(inspect.signature(cls.__init__).parameters) - {"self"}
        for name, cls in classes.items()
    }


def _unknown_key(dotted: str) -> str | None:
    """Why ``section.option`` is not a ``rareid fit`` option, or ``None`` when it is."""
    section, _, option = dotted.partition(".")
    sections = section_options()
    if section in SCALAR_KEYS and not option:
        return None
    if section not in sections:
        known = sorted([*sections, *SCALAR_KEYS])
        return f"unknown section {section!r} (known: {', '.join(known)})"
    option = option.split(".", 1)[0]
    if not option:
        return f"{section!r} needs an option, e.g. {section}.<option>"
    if option not in sections[section]:
        return f"{section} has no option {option!r}"
    return None


def _config_keys(path: str) -> tuple[list[str], str | None]:
    """The ``section.option`` keys a config file sets, or why it cannot be read."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        return [], f"cannot read it ({type(error).__name__})"
    if not isinstance(data, dict):
        return [], "expected a mapping of sections (trainer:, model:, data:, ...)"
    keys = []
    for section, value in data.items():
        if isinstance(value, dict) and section not in SCALAR_KEYS:
            keys += [f"{section}.{option}" for option in value] or [str(section)]
        else:
            keys.append(str(section))
    return keys, None


def _layer_problems(label: str, configs: Iterable[str], seen: dict[str, list[str]]) -> list[str]:
    problems = []
    for config in configs:
        if config not in seen:
            keys, error = _config_keys(config)
            found = (
                [error]
                if error
                else [f"{key}: {why}" for key in keys if (why := _unknown_key(key))]
            )
            seen[config] = found
        problems += [f"{label}: config {config}: {problem}" for problem in seen[config]]
    return problems


def _override_problems(label: str, overrides: Mapping[str, Any]) -> list[str]:
    return [f"{label}: override {key}: {why}" for key in overrides if (why := _unknown_key(key))]


def preflight(grid: Grid, base: Sequence[str], sets: Mapping[str, Any]) -> list[str]:
    """Every problem of the grid's configs and overrides, one line each (empty: all good)."""
    seen: dict[str, list[str]] = {}
    problems = _layer_problems("base", base, seen)
    problems += _override_problems("--set", sets)
    if grid.warm_start is not None:
        problems += _layer_problems("warm_start", grid.warm_start["configs"], seen)
        problems += _override_problems("warm_start", grid.warm_start["overrides"])
    for variant in grid.variants:
        label = f"variant {variant.name!r}"
        problems += _layer_problems(label, variant.configs, seen)
        problems += _override_problems(label, variant.overrides)
        problems += _override_problems(label, variant.test_overrides)
    return problems
