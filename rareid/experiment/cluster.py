"""The ``submitit`` runner: every fit of a grid, with the tests that use its checkpoint, one job on
a SLURM cluster through submitit, so a table's runs train at once on the scheduler a lab already
has. ``cluster="local"`` runs the same jobs as local processes (submitit's local executor): the
way to try a grid file before sending it to the cluster.

The launching process submits the jobs (one job array), waits for them and writes the table;
the jobs write the same run folders as the local runner, so re-running the command skips the runs
that have results and re-submits only the others.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rareid.experiment.grid import Grid
from rareid.experiment.plan import Run
from rareid.experiment.runners import (
    Runner,
    pending,
    run_one,
    train_warm_start,
    trained_warm_start,
    warm_start_folder,
)

Cluster = Literal["slurm", "local"]


def require_submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise ImportError(
            "--launcher submitit needs submitit: pip install 'rareid[cluster]'"
        ) from None
    return submitit


def fit_and_test(runs: Sequence[Run]) -> list[Run]:
    """One job: the runs that share a fit, in order (the first fits, the others test its
    checkpoint). Returns the runs that failed."""
    return [run for run in runs if not run_one(run, f"{run.variant.name} · seed {run.seed}")]


@dataclass
class SubmititRunner(Runner):
    """Jobs on a SLURM partition (``cluster="slurm"``) or local processes (``"local"``).

    ``folder`` holds submitit's job files and logs; ``gpus_per_run`` and ``cpus_per_run`` are
    what each job asks for; ``timeout_min`` its wall-clock limit.
    """

    folder: Path
    partition: str | None = None
    gpus_per_run: int = 1
    cpus_per_run: int = 8
    timeout_min: int = 24 * 60
    cluster: Cluster = "slurm"
    name: str = "rareid"

    def check(self) -> None:
        """Fail early, in one line, when this machine cannot submit."""
        require_submitit()
        if self.cluster == "slurm" and shutil.which("sbatch") is None:
            raise RuntimeError(
                "--launcher submitit: no SLURM on this machine (sbatch not found); "
                "--cluster local runs the jobs here through submitit's local executor"
            )

    def executor(self) -> Any:
        submitit = require_submitit()
        executor = submitit.AutoExecutor(folder=self.folder, cluster=self.cluster)
        parameters: dict[str, Any] = {
            "name": self.name,
            "timeout_min": self.timeout_min,
            "gpus_per_node": self.gpus_per_run,
            "tasks_per_node": 1,
        }
        if self.cluster == "slurm":
            parameters.update(nodes=1, cpus_per_task=self.cpus_per_run)
            if self.partition:
                parameters["slurm_partition"] = self.partition
        executor.update_parameters(**parameters)
        return executor

    def run(self, runs: Sequence[Run]) -> list[Run]:
        groups: dict[Path, list[Run]] = {}
        for run in pending(runs):
            groups.setdefault(run.fit_folder, []).append(run)
        if not groups:
            return []
        jobs = self.executor().map_array(fit_and_test, list(groups.values()))
        count = sum(len(group) for group in groups.values())
        print(
            f"submitted {len(jobs)} jobs ({count} runs) to {self.cluster} "
            f"(first job {jobs[0].job_id}); job logs in {self.folder}",
            flush=True,
        )
        failed: list[Run] = []
        for group, job in zip(groups.values(), jobs, strict=True):
            names = ", ".join(f"{run.variant.name} · seed {run.seed}" for run in group)
            try:
                lost = job.result()
            except Exception as error:  # the job died: time limit, preemption, node failure
                reason = str(error).strip().splitlines()
                print(f"job {job.job_id} ({names}) FAILED: {reason[0] if reason else error}")
                failed += group
                continue
            failed += lost
            state = "done" if not lost else f"{len(lost)} of {len(group)} runs FAILED"
            print(f"job {job.job_id} ({names}): {state}; log {run_log(group[0])}", flush=True)
        return failed

    def warm_start(self, grid: Grid, base: Sequence[str], sets: Mapping[str, Any]) -> Path:
        """The warm-start fit is a job too (the launching machine trains nothing)."""
        if trained_warm_start(warm_start_folder(grid, base, sets)) is not None:
            return train_warm_start(grid, base, sets)  # says it is reused
        job = self.executor().submit(train_warm_start, grid, base, sets)
        print(f"warm start: job {job.job_id} submitted to {self.cluster}", flush=True)
        try:
            return job.result()
        except Exception as error:  # the fit failed in the job, or the job died
            raise RuntimeError(f"warm start job {job.job_id} failed: {error}") from None


def run_log(run: Run) -> Path:
    return run.folder / "log.txt"
