"""``rareid test`` with ``data.protocol: mlr-video``: the Lightning test runs the video protocol
of ``rareid tracks evaluate`` (same code, same numbers) on the built-in synthetic tracklets and
on a small fake PRID2011 tree, and refuses what it cannot run in one line."""

from __future__ import annotations

import json
from pathlib import Path

import cv2

from rareid.data.synthetic import SyntheticWorld
from tests.tracks.conftest import run_rareid


def _test_args(checkpoint: Path, run: Path, *data: str) -> list[str]:
    return [
        "test",
        "--data.protocol=mlr-video",
        *data,
        "--data.trials=2",
        "--data.num_workers=0",
        f"--trainer.default_root_dir={run}",
        "--trainer.accelerator=cpu",
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        "--report.tsne=false",
        f"--ckpt_path={checkpoint}",
    ]


def test_rareid_test_runs_mlr_video_on_synthetic_tracklets(
    tiny_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    import torch

    from rareid.tracks.model import load_model
    from rareid.tracks.protocol import (
        evaluate_mlr_video,
        markdown_table,
        summarize,
        synthetic_video_set,
    )

    options = '--data.dataset_options={"identities": 8, "length": 3}'
    run = tmp_path / "run"
    argv = _test_args(tiny_checkpoint, run, "--data.dataset=synthetic-video", options)
    assert run_rareid(argv) == 0
    printed = capsys.readouterr().out
    document = json.loads((run / "results" / "results.json").read_text())
    assert document["protocol"] == "mlr-video" and document["checkpoint"] == str(tiny_checkpoint)
    model, preprocess = load_model(tiny_checkpoint)
    with torch.inference_mode():
        expected = evaluate_mlr_video(
            model, preprocess, synthetic_video_set(8, 0, 3), trials=2, seed=0
        )
    summary = summarize(expected)
    assert document["summary"] == summary  # the protocol of `rareid tracks evaluate`, reused
    lines = markdown_table(summary, ("average", "max", "level-aware", "single-frame"))
    assert "\n".join(lines) in printed
    assert (run / "results" / "results.md").read_text().splitlines() == lines
    assert "test/ramp/level-aware/rank1" in printed  # logged as a Lightning metric
    assert not (run / "results" / "rank_list.png").exists()


def test_rareid_test_mlr_video_on_a_fake_prid_tree_and_bad_options(
    tiny_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    world = SyntheticWorld(identities=8, seed=1, cameras=2, train_identities=4)
    for camera, folder in enumerate(("cam_a", "cam_b")):
        for pid in range(1, 7):
            for frame in range(3):
                path = tmp_path / "prid_2011" / "multi_shot" / folder / f"person_{pid:04d}"
                path.mkdir(parents=True, exist_ok=True)
                image = cv2.cvtColor(world.render(pid, camera, frame), cv2.COLOR_RGB2BGR)
                cv2.imwrite(str(path / f"{frame:04d}.png"), image)
    run = tmp_path / "run"
    data = ["--data.dataset=prid2011", f"--data.root={tmp_path}"]
    assert run_rareid(_test_args(tiny_checkpoint, run, *data)) == 0
    printed = capsys.readouterr().out
    assert "seeded random half split" in printed and "3 query and 3 gallery" in printed
    summary = json.loads((run / "results" / "results.json").read_text())["summary"]
    assert set(summary) == {"constant", "random", "ramp"}
    other = tmp_path / "other"
    for wrong, named in (
        (["--data.dataset=market1501", f"--data.root={tmp_path}"], "mlr-video reads a video"),
        ([*data, '--data.dataset_options={"frames": 3}'], "dataset_options"),
        (["--data.dataset=prid2011", f"--data.root={tmp_path / 'none'}"], "none"),
    ):
        assert run_rareid(_test_args(tiny_checkpoint, other, *wrong)) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and named in err.strip().splitlines()[-1], err
