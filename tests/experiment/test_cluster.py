"""``rareid experiment --launcher submitit``: a tiny grid through submitit's local executor gives
the table of the local runner; the launcher options are checked in one line each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rareid.cli import main
from rareid.commands.experiment import build_parser, make_runner
from rareid.experiment import LocalRunner, Runner
from rareid.experiment.cluster import SubmititRunner, fit_and_test
from rareid.experiment.grid import GridError, load_grid
from tests.experiment.helpers import run_experiment, write_grid


def test_the_launcher_names_the_runner(tmp_path: Path) -> None:
    grid = load_grid(write_grid(tmp_path, f"output: {tmp_path}\nvariants: [{{name: a}}]\n"))
    parse = build_parser().parse_args
    assert isinstance(make_runner(parse(["g.yaml"]), grid), LocalRunner)
    runner = make_runner(
        parse(["g.yaml", "--launcher", "submitit", "--cluster", "local", "--gpus-per-run", "0"]),
        grid,
    )
    assert isinstance(runner, SubmititRunner) and isinstance(runner, Runner)
    assert runner.folder == tmp_path / "submitit" and runner.gpus_per_run == 0
    with pytest.raises(GridError, match="--partition: only with --launcher submitit"):
        make_runner(parse(["g.yaml", "--partition", "gpu"]), grid)
    with pytest.raises(GridError, match="--timeout-min: expected a positive number"):
        make_runner(parse(["g.yaml", "--launcher", "submitit", "--timeout-min", "0"]), grid)


def test_submitit_without_slurm_is_one_line_naming_the_local_cluster(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch
    grid = write_grid(tmp_path, f"output: {tmp_path}\nvariants: [{{name: a}}]\n")
    assert main(["experiment", str(grid), "--launcher", "submitit", "--partition", "gpu"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("rareid experiment: error: --launcher submitit: no SLURM")
    assert "sbatch not found" in line and "--cluster local" in line


def test_a_job_reports_its_failed_runs(tmp_path: Path) -> None:
    """``fit_and_test`` (the body of a job) returns the runs that failed, without raising."""
    from rareid.experiment.plan import plan_runs

    grid = load_grid(write_grid(tmp_path, f"output: {tmp_path}\nvariants: [{{name: a}}]\n"))
    runs = plan_runs(grid, [0], base=[str(tmp_path / "missing.yaml")])
    assert fit_and_test(runs) == runs
    assert "fit" in (runs[0].folder / "log.txt").read_text()


@pytest.mark.e2e
def test_submitit_local_executor_gives_the_local_runners_table(tmp_path: Path) -> None:
    data = tmp_path / "data"
    main(["synth", "--out", str(data), "--identities", "12", "--seed", "3"])
    grid = write_grid(
        tmp_path,
        f"name: tiny\nbase: [conf/quickstart.yaml]\noutput: {tmp_path / 'local'}\n"
        "variants:\n  - name: full\n",
    )
    local = run_experiment(grid, data)
    assert local.returncode == 0, local.stdout + local.stderr
    cluster = ["--launcher", "submitit", "--cluster", "local", "--gpus-per-run", "0"]
    jobs = run_experiment(grid, data, "--out", str(tmp_path / "jobs"), *cluster)
    assert jobs.returncode == 0, jobs.stdout + jobs.stderr
    assert "submitted 1 jobs (1 runs) to local" in jobs.stdout
    assert (tmp_path / "jobs" / "submitit").is_dir()  # submitit's job files and logs
    tables = [
        json.loads((tmp_path / name / "table.json").read_text())["table"]
        for name in ("local", "jobs")
    ]
    assert tables[0]["full"] and tables[0] == tables[1]
