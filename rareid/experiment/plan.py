"""The (variant, seed) runs of a grid: their folders and their ``rareid fit`` / ``rareid test``
arguments."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rareid.experiment.grid import Grid, Variant, override_args


@dataclass(frozen=True)
class Run:
    """One (variant, seed): where it lives and the two commands that produce it."""

    variant: Variant
    seed: int
    folder: Path
    fit_folder: Path  # another variant's folder when the variant tests that fit
    fit_args: tuple[str, ...]
    test_args: tuple[str, ...]

    @property
    def results(self) -> Path:
        return self.folder / "results" / "results.json"

    @property
    def fit_done(self) -> Path:
        return self.fit_folder / "fit.done"

    @property
    def record(self) -> Path:
        """The arguments the run's results came from (``run.json``)."""
        return self.folder / "run.json"

    def arguments(self) -> dict[str, list[str]]:
        return {"fit": list(self.fit_args), "test": list(self.test_args)}


def runs_made_otherwise(runs: Sequence[Run]) -> list[Run]:
    """Runs whose results exist but came from other arguments (``run.json`` differs): another
    grid sharing the runs folder used the same variant name for another recipe."""
    return [
        run
        for run in runs
        if run.results.is_file()
        and run.record.is_file()
        and json.loads(run.record.read_text()) != run.arguments()
    ]


def plan_runs(
    grid: Grid,
    seeds: Sequence[int],
    base: Sequence[str] | None = None,
    sets: Mapping[str, Any] | None = None,
    warm_weights: Path | None = None,
) -> list[Run]:
    """Every (variant, seed) run with its ``rareid fit`` / ``rareid test`` arguments."""
    layers = list(grid.base if base is None else base)
    common = dict(sets or {})
    if warm_weights is not None:
        common["model.weights_path"] = str(warm_weights)
    runs = []
    for seed in seeds:
        for variant in grid.variants:
            source = grid.variant(variant.fit_from) if variant.fit_from else variant
            fit_folder = grid.runs_folder / source.slug / f"seed{seed}"
            folder = grid.runs_folder / variant.slug / f"seed{seed}"
            args = [f"--config={c}" for c in [*layers, *source.configs]]
            args += override_args({**source.overrides, **common})
            args += [f"--seed_everything={seed}", f"--data.seed={seed}"]
            fit_args = [*args, f"--trainer.default_root_dir={fit_folder}"]
            ckpt = fit_folder / "checkpoints" / f"{grid.checkpoint}.ckpt"
            test_args = [
                *args,
                *override_args(variant.test_overrides),
                f"--trainer.default_root_dir={folder}",
                f"--ckpt_path={ckpt}",
            ]
            runs.append(Run(variant, seed, folder, fit_folder, tuple(fit_args), tuple(test_args)))
    return runs
