"""Running the planned fits and tests: each ``rareid fit`` / ``rareid test`` in a subprocess
with its output in the run's ``log.txt``; the shared warm-start backbone."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from rareid.experiment.grid import Grid, override_args
from rareid.experiment.plan import Run
from rareid.runtime import die_with_parent


def _rareid(subcommand: str, args: Sequence[str], log: Path) -> int:
    """Run ``python -m rareid SUBCOMMAND ARGS`` with its output appended to ``log``; the child
    does not outlive the runner (its checkpoints are atomic, so a kill loses at most an epoch)."""
    command = [sys.executable, "-m", "rareid", subcommand, *args]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as handle:
        handle.write(f"\n$ {shlex.join(command[1:])}\n")
        handle.flush()
        env = {**os.environ, "WANDB_SILENT": "true"}
        preexec = die_with_parent if sys.platform.startswith("linux") else None
        return subprocess.run(
            command, stdout=handle, stderr=subprocess.STDOUT, env=env, preexec_fn=preexec
        ).returncode


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _fit(run: Run, log: Path) -> int:
    """Fit, resuming from ``last.ckpt`` when an earlier fit was interrupted."""
    last = run.fit_folder / "checkpoints" / "last.ckpt"
    resume = [f"--ckpt_path={last}"] if last.is_file() else []
    status = _rareid("fit", [*run.fit_args, *resume], log)
    if status == 0:
        run.fit_done.write_text("ok\n")
    return status


def warm_start_recipe(
    grid: Grid, base: Sequence[str], sets: Mapping[str, Any]
) -> tuple[list[str], str]:
    """The warm start's fit arguments and a key of everything that shapes it: the arguments,
    the content of each config layer (parsed, so a comment does not count) and the options of
    its synthetic data."""
    assert grid.warm_start is not None
    configs = [*base, *grid.warm_start["configs"]]
    args = [f"--config={c}" for c in configs]
    args += override_args({**grid.warm_start["overrides"], **sets})
    layers = []
    for config in configs:
        path = Path(config)
        layers.append(yaml.safe_load(path.read_text()) if path.is_file() else "(missing)")
    recipe = {
        "args": args,
        "layers": layers,
        "synth": grid.warm_start.get("synth") or {},
    }
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode())
    return args, digest.hexdigest()[:12]


def warm_start_folder(grid: Grid, base: Sequence[str], sets: Mapping[str, Any]) -> Path:
    """``<out>/<recipe key>``: grids and the demo that share a recipe share one warm start,
    and a changed recipe (a config layer, an override, its data) trains a new one."""
    assert grid.warm_start is not None
    root = Path(grid.warm_start.get("out") or grid.output / "warm_start")
    return root / warm_start_recipe(grid, base, sets)[1]


def trained_warm_start(folder: Path) -> Path | None:
    """The backbone file a warm-start folder holds (trained here, or a shipped copy)."""
    for name in ("backbone.pth", "backbone.safetensors"):
        if (folder / name).is_file():
            return folder / name
    return None


def train_warm_start(grid: Grid, base: Sequence[str], sets: Mapping[str, Any]) -> Path:
    """Fit the grid's warm-start recipe once and save its backbone as a timm state dict.

    A grid may name a ``shipped`` copy of the same recipe's backbone (trained once with this
    very recipe, stored in the repository): with no trained one in the recipe's folder, that
    copy is used instead of training, and the run says so.
    """
    assert grid.warm_start is not None
    folder = warm_start_folder(grid, base, sets)
    found = trained_warm_start(folder)
    if found is not None:
        print(f"warm start: {found} (same recipe) exists, reused", flush=True)
        return found
    shipped = grid.warm_start.get("shipped")
    if shipped:
        source = Path(shipped)
        if not source.is_file():
            raise RuntimeError(f"warm start: the shipped backbone {source} is not there")
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"backbone{source.suffix}"
        shutil.copyfile(source, target)
        print(
            f"warm start: {target} is the shipped {source} (this recipe, trained once); a grid "
            "of the same recipe that names no shipped copy trains it on this machine",
            flush=True,
        )
        return target
    weights = folder / "backbone.pth"
    if grid.warm_start.get("synth"):
        from rareid.data.synthetic import ensure_synthetic_dataset

        # The warm start's own (separate) identity pool, made only now that it trains.
        print(
            ensure_synthetic_dataset(**{"progress": False, **grid.warm_start["synth"]}), flush=True
        )
    args, _ = warm_start_recipe(grid, base, sets)
    args += [f"--trainer.default_root_dir={folder}"]
    print(f"warm start: training the shared backbone in {folder} ...", flush=True)
    start = time.perf_counter()
    log = folder / "log.txt"
    last = folder / "checkpoints" / "last.ckpt"
    resume = [f"--ckpt_path={last}"] if last.is_file() else []
    if _rareid("fit", [*args, *resume], log) != 0:
        raise RuntimeError(f"warm start fit failed; see {log}:\n{_tail(log)}")
    save_backbone(last, weights)
    print(f"warm start: {weights} ({_duration(time.perf_counter() - start)})", flush=True)
    return weights


def save_backbone(checkpoint: Path, out: Path) -> Path:
    """The timm backbone's weights of a rareid checkpoint, loadable by ``model.weights_path``."""
    from rareid.checkpoint_reader import read_checkpoint

    state = read_checkpoint(checkpoint)["state_dict"]
    prefix = "backbone.model."
    backbone = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not backbone:
        raise ValueError(f"{checkpoint} holds no backbone weights ({prefix}*)")
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(backbone, out)
    return out


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def run_one(run: Run, label: str) -> bool:
    """Fit (unless its fit is done; resuming an interrupted one) and test one run, then record
    its arguments in ``run.json``. False when either step failed (the log's tail is printed)."""
    log = run.folder / "log.txt"
    if not run.fit_done.is_file():
        print(f"{label}: fit ...", flush=True)
        if _fit(run, log) != 0:
            print(f"{label}: fit FAILED, see {log}\n{_tail(log)}", flush=True)
            return False
    print(f"{label}: test ...", flush=True)
    if _rareid("test", run.test_args, log) != 0 or not run.results.is_file():
        print(f"{label}: test FAILED, see {log}\n{_tail(log)}", flush=True)
        return False
    run.record.write_text(json.dumps(run.arguments(), indent=1) + "\n")
    return True


def pending(runs: Sequence[Run]) -> list[Run]:
    """The runs without results, after saying how many are skipped."""
    todo = [run for run in runs if not run.results.is_file()]
    done_before = len(runs) - len(todo)
    if done_before:
        print(f"{done_before} of {len(runs)} runs already have results (skipped)", flush=True)
    return todo


def execute(runs: Sequence[Run]) -> list[Run]:
    """Fit and test, one after the other, every run that has no results yet; returns the runs
    that failed."""
    failed: list[Run] = []
    todo = pending(runs)
    start = time.perf_counter()
    for position, run in enumerate(todo, 1):
        label = f"[{position}/{len(todo)}] {run.variant.name} · seed {run.seed}"
        run_start = time.perf_counter()
        if not run_one(run, label):
            failed.append(run)
            continue
        elapsed = time.perf_counter() - start
        left = elapsed / position * (len(todo) - position)
        print(
            f"{label}: done in {_duration(time.perf_counter() - run_start)} "
            f"(elapsed {_duration(elapsed)}, about {_duration(left)} left)",
            flush=True,
        )
    return failed


class Runner(ABC):
    """Where a grid's runs and its warm start are computed.

    ``local`` runs them one after the other in this process's machine; ``submitit``
    (:class:`rareid.experiment.cluster.SubmititRunner`) makes each fit, with the tests that use
    it, a job on a SLURM cluster. Both leave the same folders, so the report is the same.
    """

    @abstractmethod
    def run(self, runs: Sequence[Run]) -> list[Run]:
        """Fit and test every run without results; returns the runs that failed."""

    def warm_start(self, grid: Grid, base: Sequence[str], sets: Mapping[str, Any]) -> Path:
        """The grid's warm-start backbone (trained once, then reused)."""
        return train_warm_start(grid, base, sets)


class LocalRunner(Runner):
    """Today's sequential runner: every fit and test a subprocess on this machine."""

    def run(self, runs: Sequence[Run]) -> list[Run]:
        return execute(runs)
