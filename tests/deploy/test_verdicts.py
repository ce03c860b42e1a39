"""Verdicts a user can act on: a level whose calibration is unusable (too few pairs for the FAR,
or missing) is ``uncalibrated`` with the reason, never same / different; ``search`` says which
levels have usable thresholds and at which FAR."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rareid.cli import main
from rareid.deploy.calibrate import calibrate_levels
from rareid.deploy.index import GalleryIndex
from rareid.deploy.inference import list_images, load_model
from rareid.deploy.search import level_threshold

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("one_torch_thread")]


def run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:
        return int(exit_.code)


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


@pytest.fixture
def small_index(tmp_path, trained_checkpoint, gallery_dir) -> Path:
    model, preprocess = load_model(trained_checkpoint)
    index = GalleryIndex.build(
        model,
        list_images(gallery_dir),
        root=gallery_dir,
        preprocess=preprocess,
        checkpoint_path=trained_checkpoint,
    )
    return index.save(tmp_path / "gallery.npz")


def test_unresolvable_thresholds_give_no_same_or_different_verdict(
    tmp_path, small_index, query_dir, capsys
) -> None:
    index = GalleryIndex.load(small_index)
    index.calibration = unresolvable_calibration()
    index.save(small_index)
    out = tmp_path / "results"
    code = run(
        ["search", "--index", str(small_index), "--query", str(query_dir), "--out", str(out)]
    )
    printed = capsys.readouterr().out
    assert code == 0
    rows = json.loads((out / "results.json").read_text())
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
    index = GalleryIndex.load(small_index)
    index.calibration = calibrate_levels(genuine, impostor, fars=(0.01, 0.001))
    index.save(small_index)
    out = tmp_path / "results"
    code = run(
        ["search", "--index", str(small_index), "--query", str(query_dir), "--out", str(out)]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "level 4: usable at FAR 0.01, 0.001" in printed
    assert "level 2: uncalibrated" in printed and "level 1: uncalibrated (not calibrated" in printed
    rows = json.loads((out / "results.json").read_text())
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
