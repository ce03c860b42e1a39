"""Verdicts a user can act on: a level whose calibration is unusable (too few pairs for the FAR,
or missing) is ``uncalibrated`` with the reason, never same / different; ``search`` says which
levels have usable thresholds and at which FAR."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rareid.deploy.gallery.index import GalleryIndex
from rareid.deploy.model.inference import file_sha256
from rareid.deploy.verify.calibrate import calibrate_levels
from rareid.deploy.verify.verdicts import level_threshold
from tests.deploy.conftest import run_cli as run
from tests.deploy.conftest import save_folder_index

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("one_torch_thread")]


def unresolvable_calibration() -> dict:
    """What a calibration on 2-9 pairs per level looked like: thresholds, ``resolvable`` false."""
    levels = {}
    for level in (1, 2, 3, 4):
        levels[str(level)] = {
            "genuine_pairs": 3,
            "impostor_pairs": 9,
            "thresholds": {"0.01": 1e6, "0.001": 1e6},  # would accept everything
            "tar": {"0.01": 1.0, "0.001": 1.0},
            "far": {"0.01": 0.0, "0.001": 0.0},
            "resolvable": {"0.01": False, "0.001": False},
        }
    return {"fars": [0.01, 0.001], "levels": levels}


def search_calibrated(
    index_path: Path, calibration: dict, query_dir: Path, out: Path, capsys
) -> tuple[int, str]:
    """``rareid search`` of ``query_dir`` once the index holds ``calibration``: the exit status
    and what it printed."""
    index = GalleryIndex.load(index_path)
    index.calibration = calibration
    index.save(index_path)
    code = run(["search", "--index", str(index_path), "--query", str(query_dir), "--out", str(out)])
    return code, capsys.readouterr().out


@pytest.fixture
def small_index(tmp_path, trained_checkpoint, gallery_dir) -> Path:
    return save_folder_index(trained_checkpoint, gallery_dir, tmp_path / "gallery.npz")


def test_unresolvable_thresholds_give_no_same_or_different_verdict(
    tmp_path, small_index, query_dir, capsys
) -> None:
    out = tmp_path / "results"
    code, printed = search_calibrated(
        small_index, unresolvable_calibration(), query_dir, out, capsys
    )
    assert code == 0
    rows = json.loads((out / "results.json").read_text())["matches"]
    assert {row["verdict"] for row in rows} == {"uncalibrated"}
    assert all("too few" in row["verdict_reason"] for row in rows)
    assert "same" not in {row["verdict"] for row in rows}
    assert "no level has a usable threshold" in printed
    for level in (1, 2, 3, 4):
        assert f"level {level}: uncalibrated" in printed


def test_search_prints_which_levels_have_usable_thresholds(
    tmp_path, small_index, query_dir, capsys
) -> None:
    rng = np.random.default_rng(0)
    genuine = {4: rng.normal(0.2, 0.05, 200), 2: rng.normal(0.5, 0.1, 5)}
    impostor = {4: rng.normal(1.0, 0.1, 2000), 2: rng.normal(1.2, 0.1, 5)}
    out = tmp_path / "results"
    calibration = calibrate_levels(genuine, impostor, fars=(0.01, 0.001))
    code, printed = search_calibrated(small_index, calibration, query_dir, out, capsys)
    assert code == 0
    assert "level 4: usable at FAR 0.01, 0.001" in printed
    assert "level 2: uncalibrated" in printed and "level 1: uncalibrated (not calibrated" in printed
    rows = json.loads((out / "results.json").read_text())["matches"]
    by_level = {row["level"]: row for row in rows}
    assert by_level[4]["verdict"] in {"same", "different"}
    assert by_level[2]["verdict"] == "uncalibrated" and "too few" in by_level[2]["verdict_reason"]
    assert by_level[1]["verdict"] == "uncalibrated"


def test_level_threshold_gives_the_reason() -> None:
    calibration = unresolvable_calibration()
    value, reason = level_threshold(calibration, 1, 0.01)
    assert value is None and "too few impostor pairs" in reason and "9" in reason
    assert level_threshold(None, 1, 0.01) == (None, "no calibration")
    value, reason = level_threshold(calibration, 1, 0.05)
    assert value is None and "FAR 0.05" in reason


# ---------------------------------------------------------------------- calibration on labels
@pytest.fixture
def labelled_index(tmp_path, trained_checkpoint, world, people) -> tuple[Path, Path]:
    """An index of 6 people x 6 frames x 2 cameras with its labels CSV."""
    from tests.deploy.conftest import write_rgb

    folder = tmp_path / "mine" / "crops"
    rows = ["path,person,camera"]
    for number, pid in enumerate(people):
        for frame in range(6):
            camera = frame % 2
            name = f"person {number}/frame_{frame}.png"
            write_rgb(folder / name, world.render(pid, camera, 40 + frame))
            rows.append(f"{name},id{number},c{camera}")
    labels = folder / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    return save_folder_index(trained_checkpoint, folder, tmp_path / "mine" / "gallery.npz"), labels


def test_calibrate_on_labels_writes_beside_the_index(
    tmp_path, labelled_index, monkeypatch, capsys
) -> None:
    index_path, labels = labelled_index
    monkeypatch.chdir(tmp_path)
    code = run(["calibrate", "--index", str(index_path), "--labels", str(labels), "--far", "0.01"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    out = index_path.parent / "calibration.json"
    assert out.is_file() and out.with_suffix(".png").is_file()
    assert not (tmp_path / "calibration.json").exists()  # not the current folder
    calibration = json.loads(out.read_text())
    assert calibration["split"].startswith("labels")
    entry = calibration["levels"]["4"]
    # 36 images of 6 people; genuine pairs only across cameras: 6 x 3 x 3 x 2
    assert entry["genuine_pairs"] == 6 * 18 and entry["impostor_pairs"] == 36 * 30
    assert "0.01" in entry["thresholds"] and entry["far"]["0.01"] <= 0.01
    assert GalleryIndex.load(index_path).calibration == calibration
    assert "thresholds stored in" in captured.out


def test_calibrate_on_too_few_labels_is_one_line_and_stores_nothing(
    tmp_path, labelled_index, capsys
) -> None:
    index_path, labels = labelled_index
    code = run(
        ["calibrate", "--index", str(index_path), "--labels", str(labels), "--far", "0.0001"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "needs at least 10000" in err[-1] and "6 identities" in err[-1]
    assert GalleryIndex.load(index_path).calibration is None
    assert not (index_path.parent / "calibration.json").exists()


def calibrate_with(checkpoint: dict, copy: Path, index_path: Path, labels: Path) -> int:
    """Save ``checkpoint`` as ``copy``, point the index at it, and calibrate on ``labels``."""
    import torch

    torch.save(checkpoint, copy)
    index = GalleryIndex.load(index_path)
    index.checkpoint_sha256 = file_sha256(copy)
    index.save(index_path)
    return run(
        ["calibrate", "--index", str(index_path), "--labels", str(labels), "--ckpt", str(copy)]
    )


def test_calibrate_refuses_identities_the_checkpoint_trained_on(
    tmp_path, labelled_index, trained_checkpoint, capsys
) -> None:
    import torch

    index_path, labels = labelled_index
    checkpoint = torch.load(trained_checkpoint, weights_only=True)
    checkpoint["rareid_training_identities"] = {
        "root": str(tmp_path / "elsewhere"),
        "pids": [1, 2],
        "files": ["bounding_box_train/frame_3.png"],
    }
    code = calibrate_with(checkpoint, tmp_path / "recorded.ckpt", index_path, labels)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "were in the training split" in err[-1] and "id0" in err[-1]


@pytest.mark.parametrize("recorded", [True, False], ids=["digests", "readable-files"])
def test_calibrate_refuses_renamed_copies_of_training_images(
    tmp_path, labelled_index, trained_checkpoint, capsys, recorded: bool
) -> None:
    """A training image copied under another name is recognised by its content: by the
    digests the checkpoint recorded, or (older checkpoints) by the training files themselves."""
    import shutil

    import torch

    from rareid.checkpoint_reader import content_digest

    index_path, labels = labelled_index
    labelled = labels.parent / "person 2" / "frame_4.png"
    training = tmp_path / "market" / "bounding_box_train" / "0007_c1s1_000001.jpg"
    training.parent.mkdir(parents=True)
    shutil.copy(labelled, training)
    record = {
        "root": str(tmp_path / "market"),
        "pids": [7],
        "files": ["bounding_box_train/0007_c1s1_000001.jpg"],
    }
    if recorded:
        record["contents"] = [content_digest(training)]
        training.unlink()  # the digests suffice: the training data need not be here
    checkpoint = torch.load(trained_checkpoint, weights_only=True)
    checkpoint["rareid_training_identities"] = record
    code = calibrate_with(checkpoint, tmp_path / "recorded.ckpt", index_path, labels)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "were in the training split" in err[-1] and "(id2)" in err[-1]


def test_checkpoint_records_the_training_identities() -> None:
    from types import SimpleNamespace

    from rareid.data.readers.base import ImageRecord
    from tests.deploy.conftest import make_model

    model = make_model()
    split = SimpleNamespace(
        train=[ImageRecord("/data/set/train/0002_c1.jpg", 0, 0)], train_ids=(2,)
    )
    datamodule = SimpleNamespace(
        fit_split=split, hparams={"root": "/data/set", "dataset": "market1501"}
    )
    model._trainer = SimpleNamespace(datamodule=datamodule)
    checkpoint: dict = {}
    model.on_save_checkpoint(checkpoint)
    record = checkpoint["rareid_training_identities"]
    assert record["pids"] == [2] and record["files"] == ["train/0002_c1.jpg"]
    assert record["root"] == "/data/set" and len(record["sha256"]) == 64
    assert record["contents"] == []  # /data/set is not readable here


def test_checkpoint_records_the_training_contents(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from rareid.checkpoint_reader import content_digest
    from rareid.data.readers.base import ImageRecord
    from tests.deploy.conftest import make_model

    image = tmp_path / "train" / "0002_c1.jpg"
    image.parent.mkdir()
    image.write_bytes(b"jpeg bytes")
    split = SimpleNamespace(train=[ImageRecord(str(image), 0, 0)], train_ids=(2,))
    datamodule = SimpleNamespace(fit_split=split, hparams={"root": str(tmp_path)})
    model = make_model()
    model._trainer = SimpleNamespace(datamodule=datamodule)
    checkpoint: dict = {}
    model.on_save_checkpoint(checkpoint)
    record = checkpoint["rareid_training_identities"]
    assert record["contents"] == [content_digest(image)]
