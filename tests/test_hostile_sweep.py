"""A hostile user's inputs: earlier results are never replaced without ``--overwrite``, and
bad arguments to the commands and the Python API are one clear error naming what to change."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from rareid.cli import HELPER_COMMANDS, main
from tests.helpers import one_error_line, tiny_run_args


def _results(path: Path, rank1: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"rank1": rank1, "mAP": rank1 / 2}))
    return path


# ------------------------------------------------------------------ earlier results kept
def test_aggregate_keeps_earlier_results_unless_overwrite(tmp_path: Path, capsys) -> None:
    first, second = _results(tmp_path / "a.json", 50.0), _results(tmp_path / "b.json", 60.0)
    out = tmp_path / "agg"
    assert main(["aggregate", str(first), str(second), "--out", str(out)]) == 0
    before = (out / "aggregate.json").read_bytes()
    third = _results(tmp_path / "c.json", 10.0)
    capsys.readouterr()
    assert main(["aggregate", str(first), str(third), "--out", str(out)]) == 2
    line = one_error_line(capsys.readouterr().err, "aggregate")
    assert "already holds aggregate.md and aggregate.json" in line and "--overwrite" in line
    assert (out / "aggregate.json").read_bytes() == before
    assert main(["aggregate", str(first), str(third), "--out", str(out), "--overwrite"]) == 0
    assert (out / "aggregate.json").read_bytes() != before


def test_calibrate_keeps_an_earlier_calibration_unless_overwrite(tmp_path: Path, capsys) -> None:
    ckpt, config = tmp_path / "m.ckpt", tmp_path / "c.yaml"
    ckpt.write_text("x")
    config.write_text("data: {}\n")
    out = tmp_path / "calibration.json"
    out.write_text('{"earlier": true}')
    code = main(["calibrate", "--ckpt", str(ckpt), "--config", str(config), "--out", str(out)])
    assert code == 2
    line = one_error_line(capsys.readouterr().err, "calibrate")
    assert f"--out: '{out}' exists" in line and "--overwrite" in line
    assert out.read_text() == '{"earlier": true}'


@pytest.mark.parametrize("command", ["search", "index", "calibrate", "export", "aggregate"])
def test_help_shows_each_default_once(command: str, capsys) -> None:
    assert command in HELPER_COMMANDS
    assert main([command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text
    assert re.search(r"\(default: [^()]*\) \(default: ", text) is None


# ------------------------------------------------------------------ Python API
@pytest.fixture(scope="module")
def tiny_model():
    from tests.deploy.conftest import make_model

    torch.manual_seed(0)
    return make_model().eval()


def test_nan_queries_raise_instead_of_matching_index_minus_one() -> None:
    from rareid.deploy.search.exact import Searcher
    from tests.deploy.conftest import vectors_index

    index = Searcher(vectors_index(torch.randn(5, 8), [2, 2, 2, 2]))
    queries = torch.randn(2, 8)
    queries[1, 3] = float("nan")
    with pytest.raises(ValueError, match=r"1 embedding\(s\) hold NaN or infinity \(rows \[1\]\)"):
        index.search(queries, [4, 4])
    with pytest.raises(ValueError, match="whole numbers"):
        index.search(torch.randn(1, 8), [1.7])


@pytest.mark.parametrize("batch_size", [0, -1])
def test_embed_images_refuses_a_batch_size_below_one(tiny_model, batch_size: int) -> None:
    from rareid.deploy.model.inference import Preprocess, embed_images

    image = np.zeros((64, 32, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="batch_size: expected a positive integer"):
        embed_images(tiny_model, Preprocess((64, 32)), [image], [1], batch_size=batch_size)


def test_embed_images_refuses_fractional_levels(tiny_model) -> None:
    from rareid.deploy.model.inference import Preprocess, embed_images

    image = np.zeros((64, 32, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"levels: expected whole numbers .* got \[1.7"):
        embed_images(tiny_model, Preprocess((64, 32)), [image], [1.7])
    assert embed_images(tiny_model, Preprocess((64, 32)), [image], [2.0]).shape == (1, 32)


def test_build_refuses_missing_gallery_files(tiny_model, tmp_path: Path) -> None:
    import cv2

    from rareid.deploy.gallery.index import GalleryIndex

    real = tmp_path / "a.png"
    cv2.imwrite(str(real), np.zeros((64, 32, 3), dtype=np.uint8))
    with pytest.raises(FileNotFoundError, match=r"1 of the 2 gallery file\(s\) do not exist"):
        GalleryIndex.build(tiny_model, [real, tmp_path / "gone.png"])


@pytest.mark.parametrize("arguments", [(5,), ((64,),), ((64, 32), (0.5, 0.5))])
def test_preprocess_refuses_malformed_arguments(arguments: tuple) -> None:
    from rareid.deploy.model.inference import Preprocess

    with pytest.raises(TypeError, match="Preprocess"):
        Preprocess(*arguments)


def test_labels_csv_with_a_byte_order_mark(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from rareid.deploy.verify.labels import read_labels

    folder = tmp_path / "g"
    folder.mkdir()
    names = [f"p{person}_{frame}.png" for person in (1, 2) for frame in (1, 2)]
    for name in names:
        (folder / name).write_bytes(b"")
    csv = tmp_path / "labels.csv"
    rows = ["path,person"] + [f"{folder / name},{name[:2]}" for name in names]
    csv.write_bytes("\ufeff".encode() + "\n".join(rows).encode())
    index = SimpleNamespace(root=str(folder), paths=names)
    labels = read_labels(csv, index)
    assert labels.identities == 2 and len(labels.positions) == 4


# ------------------------------------------------------------------ training options
@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sweep") / "synthetic"
    assert main(["synth", "--out", str(out), "--identities", "12", "--seed", "3"]) == 0
    return out


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"data.seed": -1}, "data.seed: expected an integer >= 0, got -1"),
        ({"model.milestones": [-1]}, "model.milestones: expected epochs 1, 2, ..."),
    ],
    ids=["seed", "milestones"],
)
def test_bad_training_options_name_the_option(data: Path, tmp_path: Path, capsys, option, message):
    assert main(["fit", *tiny_run_args(data, tmp_path / "run", option)]) == 2
    assert message in one_error_line(capsys.readouterr().err, "fit")


def test_fit_overwrite_removes_the_earlier_results(data: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    settings = {
        "trainer.max_epochs": 1,
        "trainer.limit_train_batches": 2,
        "trainer.enable_model_summary": False,
        "report.rank_list_queries": 1,
    }
    assert main(["fit", *tiny_run_args(data, run, settings)]) == 0
    for name in ("results/results.json", "predictions/query.pt"):
        (run / name).parent.mkdir(exist_ok=True)
        (run / name).write_text("earlier run")
    capsys.readouterr()
    assert main(["fit", *tiny_run_args(data, run, settings), "--overwrite"]) == 0
    printed = capsys.readouterr().out
    assert not (run / "results").exists() and not (run / "predictions").exists()
    assert f"--overwrite: deleted {run / 'results'} (1 file(s)" in printed


def test_wandb_offline_files_stay_in_the_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rareid.runtime import _WANDB_FOLDERS, default_loggers

    pytest.importorskip("wandb")
    for key in _WANDB_FOLDERS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "mine"))  # the user's choice stays
    for run in ("first", "second"):
        default_loggers(tmp_path / run)
        for key in ("WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
            assert Path(os.environ[key]).is_relative_to((tmp_path / run / "wandb").resolve())
        assert os.environ["WANDB_CONFIG_DIR"] == str(tmp_path / "mine")


def test_synth_and_experiment_outputs_that_cannot_be_written_are_one_line(
    tmp_path: Path, capsys
) -> None:
    """An output folder that cannot be made (below a regular file: as root, a read-only
    folder still takes writes) is one line naming it, exit status 2."""
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    code = main(["synth", "--out", str(blocker / "synthetic"), "--identities", "4"])
    line = one_error_line(capsys.readouterr().err, "synth")
    assert code == 2 and "--out: cannot write" in line and "a file" in line
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        f"base: [conf/quickstart.yaml]\noutput: {blocker / 'out'}\n"
        "variants:\n  - name: full\n    overrides: {}\n"
    )
    code = main(["experiment", str(grid), "--seeds", "0", "--report-only"])
    line = one_error_line(capsys.readouterr().err, "experiment")
    assert code == 2 and "cannot write" in line and "a file" in line
