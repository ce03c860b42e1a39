"""``rareid experiment``: grid files, run planning, aggregation arithmetic, the runner and resume."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from rareid.cli import main
from rareid.experiment import (
    Cell,
    GridError,
    aggregate,
    format_experiment_table,
    load_grid,
    plan_runs,
    report,
    sanity_check,
    save_backbone,
    side_by_side,
    slugify,
    stack_rank_lists,
)
from rareid.models.backbone import Backbone
from tests.experiment.helpers import REPO, TINY_SETS, run_experiment, write_grid

GRIDS = sorted((REPO / "conf" / "grids").glob("*.yaml"))


def write_results(folder: Path, results: dict[str, float], rates=(1, 2, 3, 4)) -> None:
    (folder / "results").mkdir(parents=True)
    (folder / "results" / "results.json").write_text(json.dumps(results))
    (folder / "config.yaml").write_text(yaml.safe_dump({"data": {"rates": list(rates)}}))


@pytest.mark.parametrize("grid", GRIDS, ids=lambda p: p.name)
def test_shipped_grids_load_and_name_existing_configs(grid: Path) -> None:
    loaded = load_grid(grid)
    assert loaded.variants
    configs = [*loaded.base, *(c for v in loaded.variants for c in v.configs)]
    if loaded.warm_start:
        configs += list(loaded.warm_start["configs"])
    for config in configs:
        assert (REPO / config).is_file(), f"{grid.name}: {config} does not exist"


def test_slugs_are_distinct_folder_names() -> None:
    assert slugify("w/o val*") == "w-o-val-star"
    assert slugify("w/o val") == "w-o-val"
    assert slugify("IDE + Verif") == "ide-plus-verif"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("variants: [{name: a}]\nbogus: 1\n", "unknown keys ['bogus']"),
        ("variants: [{name: a}, {name: b, fit_from: c}]\n", "fit_from 'c'"),
        ("variants: [{name: 'a/b'}, {name: 'a b'}]\n", "must be distinct"),
        ("variants: [{name: a}]\nrows: [{name: r, mean_of: [z]}]\n", "mean_of"),
        ("variants: [{name: a}]\ncheckpoint: best_of_test\n", "checkpoint must be"),
        ("variants: [{name: a, fit_from: a, overrides: {x: 1}}]\n", "give it only"),
    ],
)
def test_bad_grids_are_named_errors(tmp_path: Path, text: str, message: str) -> None:
    path = write_grid(tmp_path, text)
    with pytest.raises(GridError) as info:
        load_grid(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_bad_grid_exits_with_status_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["experiment", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml does not exist" in capsys.readouterr().err


def test_plan_shares_fits_and_layers_overrides(tmp_path: Path) -> None:
    grid = load_grid(
        write_grid(
            tmp_path,
            f"""
base: [conf/quickstart.yaml]
output: {tmp_path / "out"}
checkpoint: best
variants:
  - name: full
    overrides: {{model.milestones: [8], model.use_masks: true}}
  - name: base
    configs: [conf/ablation/ide_verif_baseline.yaml]
  - name: full r=3
    fit_from: full
    test_overrides: {{data.eval_rates: [3], data.level_policy: lower}}
""",
        )
    )
    runs = plan_runs(grid, [0, 2], sets={"trainer.max_epochs": 1}, warm_weights=Path("w.pth"))
    assert [(r.variant.name, r.seed) for r in runs] == [
        ("full", 0),
        ("base", 0),
        ("full r=3", 0),
        ("full", 2),
        ("base", 2),
        ("full r=3", 2),
    ]
    full, base, shared = runs[:3]
    assert shared.fit_folder == full.folder == tmp_path / "out" / "full" / "seed0"
    assert shared.folder == tmp_path / "out" / "full-r3" / "seed0"
    assert shared.fit_args == full.fit_args
    assert "--model.milestones=[8]" in full.fit_args and "--model.use_masks=true" in full.fit_args
    assert "--config=conf/ablation/ide_verif_baseline.yaml" in base.fit_args
    for run in runs:
        assert f"--seed_everything={run.seed}" in run.fit_args
        assert f"--data.seed={run.seed}" in run.fit_args
        assert "--trainer.max_epochs=1" in run.fit_args
        assert "--model.weights_path=w.pth" in run.fit_args
    assert "--data.eval_rates=[3]" in shared.test_args
    assert "--data.level_policy=lower" in shared.test_args
    assert f"--ckpt_path={full.folder / 'checkpoints' / 'best.ckpt'}" in shared.test_args
    # a paper config replaces the benchmark base
    paper = plan_runs(grid, [0], base=["conf/paper.yaml", "conf/market1501/resnet50.yaml"])
    assert paper[0].fit_args[:2] == (
        "--config=conf/paper.yaml",
        "--config=conf/market1501/resnet50.yaml",
    )


def test_aggregation_is_mean_and_sample_std_over_seeds(tmp_path: Path) -> None:
    out = tmp_path / "out"
    grid = load_grid(
        write_grid(
            tmp_path,
            f"""
output: {out}
sanity: a
variants: [{{name: a}}, {{name: n2}}, {{name: n4}}]
rows: [{{name: naive, mean_of: [n2, n4]}}]
""",
        )
    )
    # level 4 = HR-side of rates (1, 2, 3, 4) -> level 3 is r=2, level 1 is r=4
    write_results(
        out / "a" / "seed0",
        {
            "rank1": 0.5,
            "mAP": 0.4,
            "hr/rank1": 0.8,
            "hr/rank1_std": 0.02,
            "level3/rank1": 0.6,
            "level1/rank1": 0.3,
            "level1/rank1_std": 0.04,
        },
    )
    write_results(
        out / "a" / "seed1",
        {
            "rank1": 0.7,
            "mAP": 0.6,
            "hr/rank1": 0.9,
            "hr/rank1_std": 0.04,
            "level3/rank1": 0.7,
            "level1/rank1": 0.5,
            "level1/rank1_std": 0.02,
        },
    )
    write_results(out / "n2" / "seed0", {"rank1": 0.2, "level3/rank1": 0.2})
    write_results(out / "n2" / "seed1", {"rank1": 0.4, "level3/rank1": 0.4})
    write_results(out / "n4" / "seed0", {"rank1": 0.1, "level1/rank1": 0.1})
    columns, table, missing = aggregate(grid, [0, 1])
    assert missing == ["n4 seed 1"]
    assert columns == ["HR", "r=2", "r=4", "all LR"]
    cell = table["a"]["all LR"]["rank1"]
    assert cell.mean == pytest.approx(0.6)
    assert cell.seed_std == pytest.approx(math.sqrt(((0.5 - 0.6) ** 2 + (0.7 - 0.6) ** 2) / 1))
    assert cell.seeds == 2
    assert table["a"]["HR"]["rank1"].trial_std == pytest.approx(0.03)
    assert table["a"]["all LR"]["mAP"].mean == pytest.approx(0.5)
    # averaged row: seed 0 = mean(0.2, 0.1) = 0.15 over both naive models, seed 1 = 0.4 (n4
    # has no seed 1); each level column comes from the model trained at that rate
    naive = table["naive"]
    assert naive["all LR"]["rank1"].mean == pytest.approx((0.15 + 0.4) / 2)
    assert naive["r=2"]["rank1"].mean == pytest.approx(0.3)
    assert naive["r=4"]["rank1"].mean == pytest.approx(0.1) and naive["r=4"]["rank1"].seeds == 1
    assert "HR" not in naive or not naive["HR"]
    text = format_experiment_table("t", columns, table, [0, 1])
    assert "| a | 85.0 ± 7.1 |" in text
    assert "60.0 ± 14.1" in text
    text, sane = report(grid, [0, 1])
    assert "missing runs (1): n4 seed 1" in text
    assert sane  # 85 > 65 > 40, drop 45 points > 2 x 14.1
    assert "sanity check (PASS)" in text
    assert (out / "table.md").read_text().startswith("**")
    assert (out / "chart.png").stat().st_size > 1000
    saved = json.loads((out / "table.json").read_text())
    assert saved["table"]["a"]["all LR"]["rank1"]["mean"] == pytest.approx(0.6)


def test_learning_curves_plot_each_series_against_its_budget(tmp_path: Path) -> None:
    out = tmp_path / "out"
    grid = load_grid(
        write_grid(
            tmp_path,
            f"""
output: {out}
variants:
  - {{name: a5, series: a, budget: 5}}
  - {{name: a10, series: a, budget: 10}}
  - {{name: b5, series: b, budget: 5}}
  - {{name: plain}}
""",
        )
    )
    assert [(v.series, v.budget) for v in grid.variants] == [
        ("a", 5.0),
        ("a", 10.0),
        ("b", 5.0),
        (None, None),
    ]
    for name, rank1 in (("a5", 0.2), ("a10", 0.4), ("b5", 0.3), ("plain", 0.1)):
        write_results(out / name / "seed0", {"rank1": rank1, "level1/rank1": rank1})
    text, _ = report(grid, [0])
    assert f"learning curves: {out / 'curves.png'}" in text
    assert (out / "curves.png").stat().st_size > 1000
    # A grid without budgets draws no curves.
    plain = load_grid(write_grid(tmp_path, f"output: {tmp_path / 'p'}\nvariants: [{{name: a}}]\n"))
    write_results(tmp_path / "p" / "a" / "seed0", {"rank1": 0.1})
    assert "learning curves" not in report(plain, [0])[0]


@pytest.mark.parametrize("entry", ["{name: a, series: s}", "{name: a, budget: x, series: s}"])
def test_a_curve_point_needs_a_series_and_a_numeric_budget(tmp_path: Path, entry: str) -> None:
    with pytest.raises(GridError, match="needs both `series`"):
        load_grid(write_grid(tmp_path, f"variants: [{entry}]\n"))


def test_grids_naming_one_runs_folder_share_their_runs(tmp_path: Path) -> None:
    """``runs:`` puts the (variant, seed) folders apart from the report: a second grid naming
    the same folder plans, skips and aggregates the same runs, and writes its own table."""
    shared = tmp_path / "shared"
    for name in ("tables", "demo"):
        (tmp_path / name).mkdir()
    tables, demo = (
        load_grid(
            write_grid(
                tmp_path / name,
                f"output: {tmp_path / name / 'report'}\nruns: {shared}\nvariants: {variants}\n",
            )
        )
        for name, variants in (
            ("tables", "[{name: full}, {name: w/o mask}]"),
            ("demo", "[{name: full}]"),
        )
    )
    assert (
        plan_runs(demo, [0])[0].folder
        == plan_runs(tables, [0])[0].folder
        == (shared / "full" / "seed0")
    )
    write_results(shared / "full" / "seed0", {"rank1": 0.5, "hr/rank1": 0.7})
    _, table, missing = aggregate(demo, [0])
    assert missing == [] and table["full"]["HR"]["rank1"].mean == pytest.approx(0.7)
    report(demo, [0])
    assert (tmp_path / "demo" / "report" / "table.md").is_file()
    assert not (shared / "table.md").exists()
    assert aggregate(tables, [0])[2] == ["w/o mask seed 0"]


def _cell(mean: float, seed_std: float = 0.01, trial_std: float = 0.01) -> dict[str, Cell]:
    return {"rank1": Cell(mean, seed_std, trial_std, 3)}


def test_sanity_check_needs_a_monotone_fall_beyond_the_spread() -> None:
    columns = ["HR", "r=2", "r=3", "r=4", "all LR"]
    good = {"HR": _cell(0.6), "r=2": _cell(0.5), "r=3": _cell(0.4), "r=4": _cell(0.3)}
    assert sanity_check(good, columns)[0]
    bumpy = {**good, "r=3": _cell(0.55)}
    passed, line = sanity_check(bumpy, columns)
    assert not passed and "NOT monotone" in line
    noisy = {k: _cell(v["rank1"].mean, seed_std=0.2) for k, v in good.items()}
    assert not sanity_check(noisy, columns)[0]  # drop 30 points < 2 x 20
    assert not sanity_check({"r=2": _cell(0.5)}, columns)[0]


def test_side_by_side_prints_the_difference_and_judges_it() -> None:
    def row(hr: float, lr: float, trial_std: float) -> dict[str, dict[str, Cell]]:
        return {
            "HR": {"rank1": Cell(hr, math.nan, trial_std, 1), "mAP": Cell(hr / 2, math.nan, 0, 1)},
            "all LR": {
                "rank1": Cell(lr, math.nan, trial_std, 1),
                "mAP": Cell(lr / 2, math.nan, 0, 1),
            },
        }

    table = {"base": row(0.40, 0.30, 0.02), "ours": row(0.50, 0.38, 0.03)}
    text = side_by_side(["HR", "all LR"], table, "base", "ours")
    assert "| HR | 40.0 / 20.0 | 50.0 / 25.0 | +10.0 / +5.0 |" in text
    assert "| all LR | 30.0 / 15.0 | 38.0 / 19.0 | +8.0 / +4.0 |" in text
    assert "= +8.0 points; 2 x spread = 6.0 -> a clear gain" in text
    table["ours"] = row(0.50, 0.33, 0.03)
    assert "within the spread" in side_by_side(["HR", "all LR"], table, "base", "ours")
    table["ours"] = row(0.50, 0.20, 0.03)  # 10 points worse: a loss is called a loss
    assert "-> a clear loss" in side_by_side(["HR", "all LR"], table, "base", "ours")


def test_stacked_rank_lists_check_the_queries_are_the_same(tmp_path: Path) -> None:
    import cv2
    import numpy as np

    left = np.full((100, 300, 3), 200, np.uint8)
    right = left.copy()
    right[:, 150:] = 0  # other top-k, same query column
    cv2.imwrite(str(tmp_path / "a.png"), left)
    cv2.imwrite(str(tmp_path / "b.png"), right)
    out = stack_rank_lists(tmp_path / "a.png", tmp_path / "b.png", ("A", "B"), tmp_path / "s.png")
    stacked = cv2.imread(str(out))
    assert stacked.shape == (100 + 34, 300 + 24 + 300, 3)
    right[:, :10] = 0  # another query
    cv2.imwrite(str(tmp_path / "b.png"), right)
    stack_rank_lists(tmp_path / "a.png", tmp_path / "b.png", ("A", "B"), tmp_path / "t.png")
    differ = cv2.imread(str(tmp_path / "t.png"))
    assert not np.array_equal(differ[:34], stacked[:34])  # the title says so
    assert (
        stack_rank_lists(tmp_path / "none.png", tmp_path / "b.png", ("A", "B"), tmp_path / "u.png")
        is None
    )


def test_saved_backbone_loads_through_weights_path(tmp_path: Path) -> None:
    source = Backbone("resnet18", img_size=(64, 32))
    state = {f"backbone.model.{k}": v for k, v in source.model.state_dict().items()}
    state["head.fc.weight"] = torch.zeros(2, 2)
    torch.save({"state_dict": state}, tmp_path / "run.ckpt")
    weights = save_backbone(tmp_path / "run.ckpt", tmp_path / "backbone.pth")
    loaded = Backbone("resnet18", img_size=(64, 32), weights_path=str(weights))
    for key, value in source.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key


@pytest.mark.e2e
def test_runner_trains_tests_aggregates_and_resumes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    main(["synth", "--out", str(data), "--identities", "12", "--seed", "3"])
    out = tmp_path / "out"
    grid = write_grid(
        tmp_path,
        f"""
name: tiny
base: [conf/quickstart.yaml]
output: {out}
variants:
  - name: full
  - name: IDE + Verif
    configs: [conf/ablation/ide_verif_baseline.yaml]
compare: [IDE + Verif, full]
""",
    )
    first = run_experiment(grid, data)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "[1/2] full · seed 0: fit ..." in first.stdout
    assert "[2/2] IDE + Verif · seed 0: done" in first.stdout
    table = (out / "table.md").read_text()
    assert "| full |" in table and "| IDE + Verif |" in table and "r=4 rank-1" in table
    assert (out / "chart.png").is_file()
    # the demo's comparison: side by side with the difference, both rank lists in one picture
    assert "| IDE + Verif rank-1 / mAP | full rank-1 / mAP | difference |" in first.stdout
    assert (out / "rank_lists.png").is_file() and "queries differ" not in first.stdout
    # `rareid test` writes what the masks learned beside the rank list
    assert (out / "full" / "seed0" / "results" / "masks.png").is_file()
    assert (out / "full" / "seed0" / "results" / "subvector_norms.png").is_file()
    results = out / "full" / "seed0" / "results" / "results.json"
    stamp = results.stat().st_mtime_ns

    # Resume: a finished run is skipped; a lost test re-runs the test only; an interrupted
    # fit (no fit.done, a last.ckpt) resumes from its last checkpoint.
    baseline = out / "ide-plus-verif" / "seed0"
    (baseline / "results" / "results.json").unlink()
    (baseline / "fit.done").unlink()
    second = run_experiment(grid, data)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "1 of 2 runs already have results (skipped)" in second.stdout
    assert "[1/1] IDE + Verif · seed 0: fit ..." in second.stdout
    assert results.stat().st_mtime_ns == stamp
    log = (baseline / "log.txt").read_text()
    assert (
        f"--ckpt_path={baseline / 'checkpoints' / 'last.ckpt'}" in log.split("$ -m rareid fit")[-1]
    )
    third = run_experiment(grid, data)
    assert "2 of 2 runs already have results (skipped)" in third.stdout
    assert "fit ..." not in third.stdout
    # Results made with other arguments (another grid reusing the name) are not taken as done.
    other = run_experiment(grid, data, "--set=model.embedding_dim=48")
    assert other.returncode == 2, other.stdout + other.stderr
    assert "holds results of other arguments" in other.stderr and "run.json" in other.stderr


def test_rates_are_read_from_the_config_beside_the_logger(tmp_path: Path) -> None:
    out = tmp_path / "out"
    grid = load_grid(write_grid(tmp_path, f"output: {out}\nvariants: [{{name: a}}]\n"))
    folder = out / "a" / "seed0"
    (folder / "results").mkdir(parents=True)
    (folder / "results" / "results.json").write_text(
        json.dumps({"rank1": 0.5, "level2/rank1": 0.5})
    )
    (folder / "csv" / "version_0").mkdir(parents=True)
    (folder / "csv" / "version_0" / "config.yaml").write_text("data: {rates: [1, 2, 4]}\n")
    columns, _, _ = aggregate(grid, [0])
    assert columns == ["r=2", "all LR"]  # level 2 of rates (1, 2, 4)


def test_paper_base_gets_its_own_folders_and_no_benchmark_warm_start(
    capsys: pytest.CaptureFixture,
) -> None:
    """``--base`` switches a grid to another setting: its runs must not land in (or be taken
    from) the CPU benchmark's shared folder, and the paper configs keep their own weights."""
    code = main(
        [
            "experiment",
            "conf/grids/table4.yaml",
            "--base",
            "conf/paper.yaml",
            "conf/market1501/resnet50.yaml",
            "--seeds",
            "0",
            "--dry-run",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    commands = [line for line in out.splitlines() if line.startswith("rareid ")]
    assert len(commands) == 12  # 6 fits + 6 tests
    for command in commands:
        assert "--config=conf/paper.yaml --config=conf/market1501/resnet50.yaml" in command
        assert "weights_path" not in command and "conf/benchmark" not in command
        assert "runs/experiments/table4-market1501-resnet50/" in command
        assert "runs/benchmark" not in command


def test_every_bad_config_and_override_is_named_before_the_first_run(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    grid = write_grid(
        tmp_path,
        f"""
base: [conf/quickstart.yaml]
output: {out}
variants:
  - name: good
  - name: typo
    overrides: {{model.embeding_dim: 64}}
  - name: missing
    configs: [conf/ablation/no_such_layer.yaml]
  - name: section
    test_overrides: {{modle.lr: 0.1}}
""",
    )
    status = main(["experiment", str(grid), "--set", "trainer.max_epoch=3"])
    assert status == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4, lines
    assert all(line.startswith(f"rareid experiment: error: {grid}: ") for line in lines)
    text = "\n".join(lines)
    assert "--set: override trainer.max_epoch: trainer has no option 'max_epoch'" in text
    assert "variant 'typo': override model.embeding_dim: model has no option" in text
    assert "variant 'missing': config conf/ablation/no_such_layer.yaml: cannot read it" in text
    assert "variant 'section': override modle.lr: unknown section 'modle'" in text
    assert not out.exists()  # nothing ran, nothing was written


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (a killed child waits to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.faults
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal: Linux")
def test_kill_9_of_the_runner_takes_its_running_fit_with_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    main(["synth", "--out", str(data), "--identities", "12", "--seed", "3"])
    grid = write_grid(
        tmp_path,
        f"name: tiny\nbase: [conf/quickstart.yaml]\noutput: {tmp_path / 'out'}\n"
        "variants: [{name: full}]\n",
    )
    sets = [f"--set={s}" for s in [*TINY_SETS, f"data.root={data}", "trainer.max_epochs=50"]]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    runner = subprocess.Popen(
        [sys.executable, "-m", "rareid", "experiment", str(grid), *sets],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    children_file = Path(f"/proc/{runner.pid}/task/{runner.pid}/children")
    deadline = time.monotonic() + 120
    children: list[int] = []
    while not children and time.monotonic() < deadline:
        time.sleep(0.5)
        children = [int(pid) for pid in children_file.read_text().split()]
    assert children, "the runner started no fit"
    runner.kill()
    runner.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_running(pid) for pid in children):
        time.sleep(0.2)
    alive = [pid for pid in children if _running(pid)]
    for pid in alive:  # do not leave it running if the assertion fails
        os.kill(pid, 9)
    assert not alive, "the fit outlived its runner"


def test_warm_start_is_keyed_by_its_recipe(tmp_path: Path) -> None:
    """Same recipe, same folder (shared by grids and the demo); any change, a new one."""
    from rareid.experiment.runners import warm_start_folder

    layer = tmp_path / "warm.yaml"
    layer.write_text("trainer:\n  max_epochs: 8\n")

    def folder(overrides: str = "{}", sets: dict | None = None) -> Path:
        grid = load_grid(
            write_grid(
                tmp_path,
                f"warm_start: {{configs: [{layer}], overrides: {overrides}, out: {tmp_path}/w}}\n"
                "variants: [{name: a}]\n",
            )
        )
        return warm_start_folder(grid, [], sets or {})

    first = folder()
    assert first.parent == tmp_path / "w" and folder() == first
    assert folder("{trainer.max_epochs: 2}") != first
    assert folder(sets={"trainer.accelerator": "gpu"}) != first
    layer.write_text("# a comment does not change the recipe\ntrainer:\n  max_epochs: 8\n")
    assert folder() == first
    layer.write_text("trainer:\n  max_epochs: 9\n")
    assert folder() != first


def test_side_by_side_judges_the_lowest_level_too() -> None:
    def cells(rank1: float, trial_std: float) -> dict[str, Cell]:
        return {"rank1": Cell(rank1, math.nan, trial_std, 1), "mAP": Cell(rank1, math.nan, 0, 1)}

    table = {
        "base": {"r=2": cells(0.5, 0.01), "r=4": cells(0.20, 0.02), "all LR": cells(0.4, 0.01)},
        "ours": {"r=2": cells(0.5, 0.01), "r=4": cells(0.30, 0.02), "all LR": cells(0.42, 0.01)},
    }
    lines = side_by_side(["r=2", "r=4", "all LR"], table, "base", "ours").splitlines()
    assert "r=4, rank-1: ours - base = +10.0 points; 2 x spread = 4.0 -> a clear gain" in lines
    assert lines[-1].startswith("LR queries, rank-1: ours - base = +2.0 points")


def test_paired_differences_give_a_student_t_interval_and_a_verdict() -> None:
    from rareid.experiment.tables import paired_differences, paired_interval

    mean, low, high = paired_interval([1.0, 2.0, 3.0])
    assert (mean, low, high) == pytest.approx((2.0, 2.0 - 4.303 / 3**0.5, 2.0 + 4.303 / 3**0.5))

    def cell(per_seed: dict[int, float]) -> Cell:
        values = list(per_seed.values())
        return Cell(sum(values) / len(values), math.nan, math.nan, len(values), per_seed)

    base = {0: 0.30, 1: 0.40, 2: 0.50, 3: 0.20}
    table = {
        "base": {"all LR": {"rank1": cell(base), "mAP": cell(base)}},
        # seed 3 only in the baseline: not paired, left out
        "ours": {"all LR": {"rank1": cell({0: 0.35, 1: 0.46, 2: 0.57}), "mAP": cell({0: 0.3})}},
    }
    text = paired_differences(["all LR"], table, "base", "ours")
    row = next(line for line in text.splitlines() if line.startswith("| all LR"))
    assert "+6.0 [+3.5, +8.5]; 3/3" in row and "measurably better" in row
    assert "+0.0; 0/1" in row  # one paired seed: no interval
    table["ours"]["all LR"]["rank1"] = cell({0: 0.31, 1: 0.42, 2: 0.47})
    row = paired_differences(["all LR"], table, "base", "ours").splitlines()[-1]
    assert "not measurably different" in row


def test_a_shipped_warm_start_is_used_instead_of_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rareid.experiment.runners import train_warm_start, warm_start_folder

    layer = tmp_path / "warm.yaml"
    layer.write_text("trainer:\n  max_epochs: 8\n")
    shipped = tmp_path / "shipped.safetensors"
    shipped.write_bytes(b"weights")
    grid = load_grid(
        write_grid(
            tmp_path,
            f"warm_start: {{configs: [{layer}], out: {tmp_path}/w, shipped: {shipped}, "
            f"synth: {{out: {tmp_path}/pool, identities: 8}}}}\n"
            "variants: [{name: a}]\n",
        )
    )
    weights = train_warm_start(grid, [], {})
    assert not (tmp_path / "pool").exists()  # its identity pool is made only to train it
    assert weights == warm_start_folder(grid, [], {}) / "backbone.safetensors"
    assert weights.read_bytes() == b"weights"
    assert "is the shipped" in capsys.readouterr().out
    assert train_warm_start(grid, [], {}) == weights  # now reused, not copied again
    assert "exists, reused" in capsys.readouterr().out
