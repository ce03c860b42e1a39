"""Calibration tells the truth about separability: a level whose distances do not tell people
apart (ROC AUC not clearly above 0.5) or whose true-accept rate at a FAR is below the floor
stores no threshold, and its verdicts are ``uncalibrated`` with the reason; a separable level
keeps its thresholds. The per-search false-alarm figure follows the gallery's size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rareid.deploy.verify.calibrate import (
    auc_interval,
    calibrate_levels,
    pair_far_for_search,
    roc_auc,
    stored_thresholds,
)
from rareid.deploy.verify.verdicts import level_threshold
from tests.deploy.conftest import run_cli as run
from tests.deploy.conftest import save_folder_index, write_labelled_crops

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_auc_and_its_interval() -> None:
    assert roc_auc(np.array([0.1, 0.2]), np.array([0.5, 0.6])) == 1.0
    assert roc_auc(np.array([0.5, 0.6]), np.array([0.1, 0.2])) == 0.0
    assert roc_auc(np.array([1.0]), np.array([1.0])) == 0.5  # ties count half
    low, high = auc_interval(0.8, 100, 1000)
    assert 0.7 < low < 0.8 < high < 0.9
    narrow = auc_interval(0.8, 10_000, 100_000)
    assert narrow[1] - narrow[0] < high - low  # more pairs, narrower interval


def test_random_distances_store_no_threshold_and_give_no_verdict() -> None:
    rng = np.random.default_rng(0)
    genuine = {level: rng.normal(5, 1, 400) for level in (1, 2, 3, 4)}
    impostor = {level: rng.normal(5, 1, 20_000) for level in (1, 2, 3, 4)}
    calibration = calibrate_levels(genuine, impostor, fars=(0.01, 0.001))
    assert stored_thresholds(calibration) == 0
    for level in (1, 2, 3, 4):
        entry = calibration["levels"][str(level)]
        assert entry["usable"] is False and entry["auc_ci"][0] <= 0.5
        for far in (0.01, 0.001):
            threshold, reason = level_threshold(calibration, level, far)
            assert threshold is None and reason.startswith("not separable: ROC AUC")


def test_same_person_farther_than_others_is_unusable() -> None:
    """The reported case: the same-person median above the different-person median."""
    rng = np.random.default_rng(1)
    genuine, impostor = {1: rng.normal(6, 1, 500)}, {1: rng.normal(5, 1, 50_000)}
    entry = calibrate_levels(genuine, impostor, fars=(0.01,))["levels"]["1"]
    assert entry["genuine_median"] > entry["impostor_median"]
    assert entry["usable"] is False and entry["thresholds"] == {}
    assert entry["tar"]["0.01"] < 0.01  # measured, reported, never used
    assert "0.01" in entry["refused_thresholds"]  # drawn on the picture, greyed
    assert "same-person median distance" in entry["unusable"]


def test_a_tar_below_the_floor_stores_no_threshold_at_that_far() -> None:
    """Separable on the whole (AUC well above 0.5) but useless at a strict FAR."""
    rng = np.random.default_rng(2)
    genuine = {4: np.concatenate([rng.normal(2, 1, 1000), rng.normal(0.5, 0.01, 10)])}
    impostor = {4: rng.normal(3, 1, 10_000)}
    calibration = calibrate_levels(genuine, impostor, fars=(0.3, 0.001), min_tar=0.05)
    entry = calibration["levels"]["4"]
    assert entry["usable"] is True and entry["auc"] > 0.7
    assert "0.3" in entry["thresholds"]
    assert "0.001" not in entry["thresholds"] and entry["tar"]["0.001"] < 0.05
    threshold, reason = level_threshold(calibration, 4, 0.001)
    assert threshold is None and "below the floor 0.05" in reason


def test_a_separable_level_keeps_its_thresholds() -> None:
    rng = np.random.default_rng(3)
    genuine, impostor = {3: rng.normal(1, 0.3, 500)}, {3: rng.normal(4, 0.5, 5000)}
    calibration = calibrate_levels(genuine, impostor, fars=(0.01, 0.001))
    entry = calibration["levels"]["3"]
    assert entry["usable"] and entry["auc"] > 0.99 and entry["auc_ci"][0] > 0.99
    assert set(entry["thresholds"]) == {"0.01", "0.001"}
    assert level_threshold(calibration, 3, 0.01)[0] == entry["thresholds"]["0.01"]


def test_false_alarms_per_search_follow_the_gallery_size() -> None:
    rng = np.random.default_rng(4)
    genuine, impostor = {4: rng.normal(1, 0.3, 500)}, {4: rng.normal(4, 0.5, 20_000)}
    assert pair_far_for_search(0.1, 1000) == pytest.approx(1e-4)
    calibration = calibrate_levels(
        genuine, impostor, fars=(0.01,), gallery_size=1000, far_per_search=0.5
    )
    assert calibration["gallery_size"] == 1000
    assert calibration["false_same_per_search"]["0.01"] == pytest.approx(10.0)
    pair_far = calibration["far_per_search"]["pair_far"]
    assert pair_far == pytest.approx(5e-4) and pair_far in calibration["fars"]
    key = repr(pair_far)
    assert calibration["false_same_per_search"][key] == pytest.approx(0.5)
    assert calibration["levels"]["4"]["far"][key] <= pair_far


# ---------------------------------------------------------------- through the commands
@pytest.fixture
def labelled_folder(tmp_path, world, people) -> tuple[Path, Path]:
    """6 people x 6 frames x 2 cameras and their labels CSV."""
    folder = tmp_path / "mine" / "crops"
    return folder, write_labelled_crops(folder, world, people)


@pytest.fixture
def random_embeddings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model that cannot separate anyone: every embedding is noise."""
    from rareid.models.embedding import EmbeddingModel

    generator = torch.Generator().manual_seed(0)

    def noise(self, images: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        return torch.randn(images.shape[0], self.embedding_dim, generator=generator)

    monkeypatch.setattr(EmbeddingModel, "embed", noise)


@pytest.mark.e2e
def test_a_model_that_cannot_separate_gives_no_same_verdict(
    tmp_path, trained_checkpoint, labelled_folder, query_dir, random_embeddings, capsys
) -> None:
    folder, labels = labelled_folder
    index_path = save_folder_index(trained_checkpoint, folder, tmp_path / "gallery.npz")
    code = run(["calibrate", "--index", str(index_path), "--labels", str(labels), "--far", "0.05"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    calibration = json.loads((index_path.parent / "calibration.json").read_text())
    assert stored_thresholds(calibration) == 0
    assert all(entry["usable"] is False for entry in calibration["levels"].values())
    for level in (1, 2, 3, 4):
        assert f"level {level}:" in captured.out and "AUC" in captured.out
    assert "UNUSABLE" in captured.out and "levels none" in captured.out
    out = tmp_path / "results"
    code = run(
        [
            "search",
            "--index",
            str(index_path),
            "--query",
            str(query_dir),
            "--out",
            str(out),
            "--far",
            "0.05",
        ]
    )
    assert code == 0
    rows = json.loads((out / "results.json").read_text())["matches"]
    verdicts = [match.get("verdict") for row in rows for match in row.get("matches", [row])]
    assert verdicts and set(verdicts) == {"uncalibrated"}
    assert all("not separable" in row["verdict_reason"] for row in rows)


@pytest.mark.e2e
def test_far_per_search_calibrates_the_gallery_wide_rate(
    tmp_path, trained_checkpoint, labelled_folder, capsys
) -> None:
    folder, labels = labelled_folder
    index_path = save_folder_index(trained_checkpoint, folder, tmp_path / "gallery.npz")
    code = run(
        [
            "calibrate",
            "--index",
            str(index_path),
            "--labels",
            str(labels),
            "--far",
            "0.05",
            "--far-per-search",
            "0.5",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    calibration = json.loads((index_path.parent / "calibration.json").read_text())
    assert calibration["gallery_size"] == 36
    assert calibration["far_per_search"]["pair_far"] == pytest.approx(0.5 / 36)
    assert "false 'same' per search" in captured.out
    assert "per-pair FAR 0.0139" in captured.out


def test_far_per_search_needs_an_index(capsys) -> None:
    code = run(["calibrate", "--ckpt", "x.ckpt", "--config", "c.yaml", "--far-per-search", "1"])
    assert code == 2 and "--far-per-search needs --index" in capsys.readouterr().err


def test_search_uses_the_far_calibrated_per_search(capsys) -> None:
    from rareid.commands.search_run import DEFAULT_SEARCH_FAR, search_far

    assert search_far(None) == DEFAULT_SEARCH_FAR
    calibration = {"gallery_size": 200, "far_per_search": {"target": 0.5, "pair_far": 0.0025}}
    assert search_far(calibration) == 0.0025
    assert "at most 0.5 false 'same' per search of 200 images" in capsys.readouterr().out
