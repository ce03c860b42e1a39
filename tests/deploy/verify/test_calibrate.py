"""Per-level "same person?" thresholds: the FAR arithmetic, and ``rareid calibrate`` on the
validation split of a small synthetic dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from rareid.data.synthetic import write_synthetic_dataset
from rareid.deploy.gallery.index import GalleryIndex
from rareid.deploy.model.inference import list_images, load_model
from rareid.deploy.verify.calibrate import calibrate_levels, roc_curve, threshold_at_far
from tests.deploy.conftest import run_cli as run

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_threshold_accepts_at_most_the_far_share_of_impostors() -> None:
    genuine = np.array([0.5, 5.0])
    impostor = np.arange(1000, dtype=float)
    threshold = threshold_at_far(genuine, impostor, 0.01)
    assert np.mean(impostor <= threshold) == 0.01 and 9 <= threshold < 10
    tied = np.array([1.0] * 50 + [2.0] * 950)  # a tie at the boundary stays rejected
    assert np.mean(tied <= threshold_at_far(genuine, tied, 0.01)) == 0.0
    assert threshold_at_far(genuine, np.array([3.0, 4.0]), 0.001) < 3.0


def test_calibration_per_level_reports_tar_and_resolvability() -> None:
    rng = np.random.default_rng(0)
    genuine = {1: rng.normal(4, 1, 300), 4: rng.normal(1, 0.3, 300)}
    impostor = {1: rng.normal(8, 1, 5000), 4: rng.normal(3, 0.5, 500)}
    result = calibrate_levels(genuine, impostor, fars=(1e-2, 1e-3))
    low, high = result["levels"]["1"], result["levels"]["4"]
    assert low["thresholds"]["0.01"] > high["thresholds"]["0.01"]  # scales differ by level
    for entry, keys in ((low, ("0.01", "0.001")), (high, ("0.01",))):
        for key in keys:
            assert entry["far"][key] <= float(key)
            assert 0 <= entry["tar"][key] <= 1
    assert low["resolvable"]["0.001"] and not high["resolvable"]["0.001"]  # 500 impostors
    assert "0.001" not in high["thresholds"]  # nothing stored where it is not resolvable
    assert "too few impostor pairs (500)" in high["unresolved"]["0.001"]
    far, tar = roc_curve(genuine[1], impostor[1])
    assert np.all(np.diff(far) >= 0) and np.all(np.diff(tar) >= 0) and tar[-1] == 1


@pytest.fixture(scope="module")
def synthetic_config(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_dataset(root / "data", identities=48, cameras=2, seed=0, progress=False)
    config = {
        "data": {
            "dataset": "synthetic",
            "root": str(root / "data"),
            "input_size": [64, 32],
            "num_workers": 0,
            "val_trials": 4,
            "val_identities": 10,  # held out: impostor pairs exist, enough pairs for an AUC
        }
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, config


@pytest.mark.e2e
def test_calibrate_command_writes_thresholds_into_the_index(
    tmp_path, trained_checkpoint, gallery_dir, synthetic_config, capsys
) -> None:
    config_path, _ = synthetic_config
    model, preprocess = load_model(trained_checkpoint)
    index_path = GalleryIndex.build(
        model,
        list_images(gallery_dir)[:3],
        root=gallery_dir,
        preprocess=preprocess,
        checkpoint_path=trained_checkpoint,
    ).save(tmp_path / "g.npz")
    out = tmp_path / "cal" / "calibration.json"
    code = run(
        [
            "calibrate",
            "--ckpt",
            str(trained_checkpoint),
            "--config",
            str(config_path),
            "--index",
            str(index_path),
            "--out",
            str(out),
            "--far",  # 3 held-out identities give too few impostor pairs for 1e-2
            "0.1",
        ]
    )
    captured = capsys.readouterr()
    printed = captured.out
    assert code == 0, captured.err
    calibration = json.loads(out.read_text())
    assert out.with_suffix(".png").stat().st_size > 1000
    assert calibration["split"] == "val" and calibration["fars"] == [0.1]
    levels = calibration["levels"]
    assert set(levels) == {"1", "2", "3", "4"}  # LR queries at rates 2, 3, 4 and HR queries
    for entry in levels.values():
        assert entry["genuine_pairs"] > 0 and entry["impostor_pairs"] > 0
        assert entry["far"]["0.1"] <= 0.1
    assert len({entry["thresholds"]["0.1"] for entry in levels.values()}) == 4
    assert GalleryIndex.load(index_path).calibration == calibration
    assert "level 1:" in printed and "TAR" in printed


@pytest.mark.e2e
def test_calibrate_refuses_a_config_whose_rates_contradict_the_checkpoint(
    tmp_path, trained_checkpoint, synthetic_config, capsys
) -> None:
    _, config = synthetic_config
    config = {"data": {**config["data"], "rates": [1, 2, 4, 8]}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    code = run(
        [
            "calibrate",
            "--ckpt",
            str(trained_checkpoint),
            "--config",
            str(path),
            "--out",
            str(tmp_path / "c.json"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "data.rates is [1, 2, 4, 8]" in err and "[1.0, 2.0, 3.0, 4.0]" in err
