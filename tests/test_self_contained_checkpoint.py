"""A checkpoint is the whole model: copied alone into an empty folder (the warm-start weights
of the run that wrote it gone), it loads through every documented API and tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import timm
import torch

from rareid.cli import main
from tests.helpers import tiny_run_args


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("alone") / "synthetic"
    assert main(["synth", "--out", str(out), "--identities", "12", "--seed", "3"]) == 0
    return out


@pytest.fixture(scope="module")
def warm_started(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``last.ckpt`` of a run that started from a local weights file, since deleted."""
    root = tmp_path_factory.mktemp("warm")
    weights = root / "warm_start" / "backbone.pth"
    weights.parent.mkdir()
    torch.save(timm.create_model("resnet18", num_classes=0).state_dict(), weights)
    run = root / "run"
    settings = {
        "trainer.max_epochs": 1,
        "trainer.limit_train_batches": 2,
        "trainer.enable_model_summary": False,
        "report.rank_list_queries": 1,
        "model.weights_path": str(weights),
    }
    assert main(["fit", *tiny_run_args(data, run, settings)]) == 0
    shutil.rmtree(weights.parent)
    return run / "checkpoints" / "last.ckpt"


@pytest.fixture
def alone(warm_started: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The checkpoint copied into an empty folder, which is the working directory."""
    folder = tmp_path / "empty"
    folder.mkdir()
    copy = Path(shutil.copy(warm_started, folder / "model.ckpt"))
    monkeypatch.chdir(folder)
    return copy


def test_the_checkpoint_records_its_warm_start(warm_started: Path) -> None:
    """The warm-start path stays recorded (provenance), it is just not needed to rebuild."""
    saved = torch.load(warm_started, map_location="cpu", weights_only=True)
    assert saved["hyper_parameters"]["weights_path"].endswith("warm_start/backbone.pth")


def test_load_from_checkpoint_alone(alone: Path) -> None:
    from rareid.models.module import RAReIDModule

    model = RAReIDModule.load_from_checkpoint(alone)
    saved = torch.load(alone, map_location="cpu", weights_only=True)["state_dict"]
    for name, value in model.state_dict().items():
        if name in saved:
            assert torch.equal(value, saved[name]), name
    assert not model.training


def test_load_model_and_preprocess_alone(alone: Path) -> None:
    from rareid.deploy.model.inference import Preprocess, embed_images, load_model

    model, preprocess = load_model(alone)
    assert Preprocess.from_checkpoint(alone) == preprocess
    image = torch.randint(0, 255, (50, 20, 3), dtype=torch.uint8).numpy()
    assert embed_images(model, preprocess, [image], [1]).shape == (1, 32)


def test_rareid_test_alone(alone: Path, data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = {"report.rank_list_queries": 1}
    run = alone.parent / "run"
    status = main(["test", *tiny_run_args(data, run, settings), "--ckpt_path", str(alone)])
    assert status == 0, capsys.readouterr().err
    assert any((run / "results").iterdir())


def test_training_still_reads_the_warm_start(data: Path, tmp_path: Path) -> None:
    """A fit (no --ckpt_path) still starts from its weights file: a missing one is an error."""
    settings = {"model.weights_path": str(tmp_path / "gone.pth"), "trainer.max_epochs": 1}
    assert main(["fit", *tiny_run_args(data, tmp_path / "run", settings)]) == 2
