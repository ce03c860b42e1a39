"""Checkpoints through the ``rareid`` command: last every epoch, resume, other data, conflicts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from rareid.cli import main, run_cli
from tests.helpers import tiny_run_args


def _synth(out: Path, identities: int) -> Path:
    assert main(["synth", "--out", str(out), "--identities", str(identities), "--seed", "5"]) == 0
    return out


def _common(data: Path, run: Path, options: dict | None = None) -> list[str]:
    extra = {
        "trainer.enable_model_summary": False,
        "report.rank_list_queries": 1,
        "data.val_identities": 2,  # one held-out identity cannot select a checkpoint
    }
    return tiny_run_args(data, run, {**extra, **(options or {})})


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Three epochs validated every epoch on a monitor that never improves after epoch 0."""
    root = tmp_path_factory.mktemp("fitted")
    data = _synth(root / "data", 12)
    run = root / "run"
    status = main(
        [
            "fit",
            *_common(data, run),
            "--trainer.max_epochs",
            "3",
            "--trainer.limit_train_batches",
            "1",
            "--trainer.check_val_every_n_epoch",
            "1",
            "--checkpoint.monitor",
            "epoch",
            "--checkpoint.mode",
            "min",
            "--progressive.phase_epochs",
            "[0, 0, 1, 2]",
        ]
    )
    assert status == 0
    return data, run


def test_last_checkpoint_is_the_last_epoch_when_the_monitor_never_improves(
    fitted: tuple[Path, Path],
) -> None:
    _, run = fitted
    assert _load(run / "checkpoints" / "best.ckpt")["epoch"] == 0
    last = _load(run / "checkpoints" / "last.ckpt")
    assert last["epoch"] == 2
    assert last["callbacks"]["ProgressiveMaskTraining"]["phase"] == 4
    assert not (run / ".rareid.lock").exists()


def test_resume_from_last_continues_in_the_right_mask_phase(
    fitted: tuple[Path, Path], tmp_path: Path
) -> None:
    """Resume an interrupted run (epoch 0 done, phase 2) and finish it in the right phases."""
    data, run = fitted
    interrupted = _load(run / "checkpoints" / "best.ckpt")  # epoch 0, before phases 3 and 4
    assert interrupted["epoch"] == 0
    assert interrupted["callbacks"]["ProgressiveMaskTraining"]["phase"] == 2
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    (resumed / "checkpoints" / "last.ckpt").write_bytes(
        (run / "checkpoints/best.ckpt").read_bytes()
    )
    cli = run_cli(
        [
            "fit",
            *_common(data, resumed),
            "--ckpt_path",
            "last",
            "--trainer.max_epochs",
            "3",
            "--trainer.limit_train_batches",
            "1",
            "--trainer.check_val_every_n_epoch",
            "2",
            "--progressive.phase_epochs",
            "[0, 0, 1, 2]",
        ]
    )
    assert cli.trainer.current_epoch == 3  # epochs 1 and 2 were run after the resume
    last = _load(resumed / "checkpoints" / "last.ckpt")
    assert last["epoch"] == 2
    assert last["callbacks"]["ProgressiveMaskTraining"]["phase"] == 4


def test_checkpoint_tests_on_data_with_other_identities(
    fitted: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, run = fitted
    other = _synth(tmp_path / "other", 8)  # 4 training identities instead of 6
    out = tmp_path / "cross"
    status = main(
        ["test", *_common(other, out), "--ckpt_path", str(run / "checkpoints" / "last.ckpt")]
    )
    assert status == 0, capsys.readouterr().err
    results = json.loads((out / "results" / "results.json").read_text())
    assert 0.0 <= results["rank1"] <= 1.0


def test_checkpoint_tests_on_data_without_a_training_split(
    fitted: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A user's own query/gallery folders, no train/: the model is built without a classifier."""
    _, run = fitted
    other = _synth(tmp_path / "other", 8)
    for train in other.rglob("bounding_box_train"):
        shutil.rmtree(train)
    out = tmp_path / "no_train"
    status = main(
        ["test", *_common(other, out), "--ckpt_path", str(run / "checkpoints" / "last.ckpt")]
    )
    assert status == 0, capsys.readouterr().err
    results = json.loads((out / "results" / "results.json").read_text())
    assert 0.0 <= results["rank1"] <= 1.0


def test_best_falls_back_to_last_when_there_is_no_best(
    fitted: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, run = fitted
    only_last = tmp_path / "only_last"
    (only_last / "checkpoints").mkdir(parents=True)
    (only_last / "checkpoints" / "last.ckpt").write_bytes(
        (run / "checkpoints" / "last.ckpt").read_bytes()
    )
    cli = run_cli(["test", *_common(data, only_last), "--ckpt_path", "best"])
    assert cli.config.test.ckpt_path == str(only_last / "checkpoints" / "last.ckpt")
    assert "no best.ckpt" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            ["--model.embedding_dim", "64"],
            "model.embedding_dim: the checkpoint was trained with 32",
        ),
        (
            ["--data.rates", "[1, 2, 4, 8]"],
            "data.rates: the checkpoint was trained with [1, 2, 3, 4]",
        ),
        (
            ["--data.input_size", "[128, 64]"],
            "data.input_size: the checkpoint was trained with [64, 32]",
        ),
    ],
    ids=["embedding_dim", "rates", "input_size"],
)
def test_options_that_contradict_the_checkpoint_are_errors(
    fitted: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    option: list[str],
    message: str,
) -> None:
    data, run = fitted
    args = [
        "test",
        *_common(data, tmp_path / "t"),
        *option,
        "--ckpt_path",
        str(run / "checkpoints/last.ckpt"),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_model_options_come_from_the_checkpoint(fitted: tuple[Path, Path], tmp_path: Path) -> None:
    data, run = fitted
    # The config asks for what the checkpoint holds; a value the user gives, even the
    # default, must agree with it (tests/test_usage_errors.py: options not given).
    args = _common(data, tmp_path / "t")
    cli = run_cli(["test", *args, "--ckpt_path", str(run / "checkpoints/last.ckpt")])
    assert cli.model.hparams.embedding_dim == 32
    assert tuple(cli.model.rates) == (1.0, 2.0, 3.0, 4.0)
    assert tuple(cli.datamodule.input_size) == (64, 32)
