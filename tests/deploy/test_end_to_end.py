"""From a trained checkpoint to ranked matches with verdicts, through the command line:
``rareid index`` a folder of crops in arbitrary names, ``rareid search`` with degraded crops of
unseen sizes; ``--add`` and the refused checkpoint; one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from rareid.deploy.gallery.index import GalleryIndex
from rareid.deploy.model.inference import load_model
from rareid.deploy.verify.calibrate import calibrate_levels
from rareid.levels import assign_level, estimate_rate
from tests.deploy.conftest import GALLERY_NAMES, index_args, search_args
from tests.deploy.conftest import run_cli as run

pytestmark = [
    pytest.mark.e2e,  # trains a tiny model for seconds, runs the commands
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no"),
]


def calibrate_on_other_frames(index_path: Path, checkpoint: Path, world, people) -> dict:
    """Per-level thresholds from renders the queries never use (frames 20..25 of camera 0)."""
    from rareid.data.lowres import degrade

    model, preprocess = load_model(checkpoint)
    index = GalleryIndex.load(index_path)
    owner = {name: number for number, name in enumerate(GALLERY_NAMES)}
    gallery_people = torch.tensor([owner[path] for path in index.paths])
    genuine, impostor = {}, {}
    for level, rate in ((1, 4.0), (2, 3.0), (3, 2.0), (4, 1.0)):
        images, who = [], []
        for number, pid in enumerate(people):
            for frame in range(20, 26):
                image = world.render(pid, 0, frame)
                images.append(degrade(image, rate) if rate > 1 else image)
                who.append(number)
        levels = torch.full((len(images),), level)
        embeddings = model.embed(preprocess(images), levels)
        dist = model.distance(embeddings, levels, index.embeddings).numpy()
        same = (torch.tensor(who)[:, None] == gallery_people[None, :]).numpy()
        genuine[level], impostor[level] = dist[same], dist[~same]
    calibration = calibrate_levels(genuine, impostor, fars=(0.05, 0.01))
    index.calibration = calibration
    index.save(index_path)
    return calibration


def test_index_then_search_ranks_the_true_identity_first_with_verdicts(
    tmp_path, trained_checkpoint, gallery_dir, query_dir, query_truth, world, people, capsys
) -> None:
    index_path = tmp_path / "gallery.npz"
    code = run(index_args(trained_checkpoint, gallery_dir, index_path, workers=None))
    captured = capsys.readouterr()
    assert code == 0
    assert (
        "6 images (6 added, 0 changed and re-embedded, 0 deleted from the gallery and dropped, "
        "0 already indexed, 1 unreadable skipped, 0 flagged crops)"
    ) in captured.out
    assert "broken.jpg" in captured.err
    index = GalleryIndex.load(index_path)
    assert sorted(index.paths) == sorted(GALLERY_NAMES)
    assert index.reference_height == 128

    calibration = calibrate_on_other_frames(index_path, trained_checkpoint, world, people)
    thresholds = [calibration["levels"][str(k)]["thresholds"]["0.05"] for k in (1, 2, 3, 4)]
    assert len(set(thresholds)) == 4  # one threshold per level, not one for all

    out = tmp_path / "results"
    code = run(
        [
            "search",
            "--index",
            str(index_path),
            "--query",
            str(query_dir),
            "--top-k",
            "3",
            "--out",
            str(out),
            "--far",
            "0.05",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rows = json.loads((out / "results.json").read_text())["matches"]
    assert (out / "results.csv").read_text().count("\n") == len(rows) + 1
    assert (out / "rank_sheet_001.png").stat().st_size > 1000
    assert (out / "rank_sheet_003.png").is_file()  # 24 queries, 8 per sheet: all drawn
    queries = {row["query"] for row in rows}
    assert len(queries) == len(query_truth) == 24
    first = {}
    for row in rows:
        name = Path(row["query"]).name
        # the level comes from the crop's height against the gallery median (128 px)
        assert row["level"] == assign_level(estimate_rate(row["query_height"], 128), index.rates)
        threshold = calibration["levels"][str(row["level"])]["thresholds"]["0.05"]
        assert row["verdict"] == ("same" if row["distance"] <= threshold else "different")
        if row["gallery"] == query_truth[name]:
            first[name] = row
    assert {row["level"] for row in rows} == {1, 2, 3, 4}
    # the true identity is always in the top 3 and nearly always first
    assert len(first) == 24
    assert np.mean([row["rank"] == 1 for row in first.values()]) >= 0.9
    assert (
        np.mean([row["verdict"] == "same" for row in first.values()]) >= 0.6
    )  # most true matches accepted at FAR 5 % (a tiny model: a floor, not a figure)
    wrong = [row for row in rows if row["gallery"] != query_truth[Path(row["query"]).name]]
    assert np.mean([row["verdict"] == "different" for row in wrong]) >= 0.75
    for level in (1, 2, 3, 4):
        line = next(x for x in captured.out.splitlines() if x.startswith(f"level {level}: "))
        assert "same person if distance <=" in line
    line = next(text for text in captured.out.splitlines() if text.startswith("person0_h97.png"))
    top = first["person0_h97.png"]
    assert f"1. {top['gallery']} {top['distance']:.4g} {top['verdict']}" in line
    assert len(line) < 200  # a short table row; every match is in the CSV and JSON

    # results are not overwritten silently
    again = ["search", "--index", str(index_path), "--query", str(query_dir), "--out", str(out)]
    assert run(again) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert run([*again, "--overwrite", "--rerank", "--backend", "torch"]) == 0
    reranked = json.loads((out / "results.json").read_text())["matches"]
    assert all("rerank_distance" in row for row in reranked)
    printed = capsys.readouterr().out
    assert "re-ranked distance" in printed
    line = next(text for text in printed.splitlines() if text.startswith("person0_h97.png"))
    shown = [row for row in reranked if row["query"].endswith("person0_h97.png")][:3]
    for rank, row in enumerate(shown, start=1):  # the distances that ordered the list
        assert f"{rank}. {row['gallery']} {row['rerank_distance']:.4g}" in line
    assert [row["rerank_distance"] for row in shown] == sorted(r["rerank_distance"] for r in shown)


def test_add_appends_new_images_only_and_refuses_another_checkpoint(
    tmp_path, trained_checkpoint, gallery_dir, capsys
) -> None:
    folder = tmp_path / "gallery"
    shutil.copytree(gallery_dir, folder)
    later = [folder / name for name in GALLERY_NAMES[3:]]
    parked = tmp_path / "parked"
    for path in later:  # first index only the first three people
        (parked / path.relative_to(folder)).parent.mkdir(parents=True, exist_ok=True)
        path.rename(parked / path.relative_to(folder))
    index_path = tmp_path / "g.npz"
    base = index_args(trained_checkpoint, folder, index_path, workers=None)
    assert run(base) == 0
    before = GalleryIndex.load(index_path)
    assert len(before) == 3
    for path in later:
        (parked / path.relative_to(folder)).rename(path)

    assert run(base) == 2  # an existing index is never overwritten
    assert "--add" in capsys.readouterr().err
    assert run([*base, "--add"]) == 0
    assert (
        "6 images (3 added, 0 changed and re-embedded, 0 deleted from the gallery and dropped, "
        "3 already indexed, 1 unreadable skipped, 0 flagged crops)" in capsys.readouterr().out
    )
    after = GalleryIndex.load(index_path)
    assert after.paths[:3] == before.paths
    assert torch.equal(after.embeddings[:3], before.embeddings)  # not re-embedded

    other = tmp_path / "other.ckpt"
    checkpoint = torch.load(trained_checkpoint, weights_only=True)
    checkpoint["state_dict"]["head.fc.bias"] += 1.0
    torch.save(checkpoint, other)
    code = run(index_args(other, folder, index_path, "--add", workers=None))
    err = capsys.readouterr().err
    assert code == 2
    assert "is not the checkpoint the index" in err and "build a new index" in err
    assert GalleryIndex.load(index_path).embeddings.equal(after.embeddings)
    code = run(
        [
            "search",
            "--index",
            str(index_path),
            "--query",
            str(folder / GALLERY_NAMES[0]),
            "--ckpt",
            str(other),
            "--out",
            str(tmp_path / "r"),
        ]
    )
    assert code == 2
    assert "not the checkpoint the index was built with" in capsys.readouterr().err


def test_index_file_loads_without_pickle(tmp_path, trained_checkpoint, gallery_dir) -> None:
    model, preprocess = load_model(trained_checkpoint)
    paths = sorted(gallery_dir.rglob("*.png"))
    index = GalleryIndex.build(
        model, paths, root=gallery_dir, preprocess=preprocess, checkpoint_path=trained_checkpoint
    )
    saved = index.save(tmp_path / "i.npz")
    with np.load(saved, allow_pickle=False) as data:  # raises if anything needs unpickling
        assert data["embeddings"].shape == (len(paths), model.embedding_dim)
    loaded = GalleryIndex.load(saved)
    assert torch.equal(loaded.embeddings, index.embeddings)
    assert loaded.paths == index.paths and loaded.preprocess == index.preprocess
    assert loaded.checkpoint_sha256 == index.checkpoint_sha256 != ""
    assert [p.name for p in tmp_path.iterdir()] == ["i.npz"]  # no temporary file left


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["index", "--ckpt", "missing.ckpt", "--gallery", ".", "--out", "x.npz"], "--ckpt"),
        (["search", "--index", "missing.npz", "--query", "."], "missing.npz"),
        (["search", "--index", "i.npz", "--query", ".", "--top-k", "0"], "--top-k"),
        (["search", "--index", "i.npz", "--query", ".", "--rate", "2", "--level", "1"], "--rate"),
        (["export", "--ckpt", "missing.ckpt"], "--ckpt"),
        (["calibrate", "--ckpt", "missing.ckpt", "--config", "c.yaml"], "c.yaml"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert run(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and "Traceback" not in "".join(err)


def test_empty_or_unreadable_gallery_folder_is_refused(tmp_path, trained_checkpoint, capsys):
    folder = tmp_path / "empty"
    folder.mkdir()
    command = index_args(trained_checkpoint, folder, tmp_path / "i.npz", workers=None)
    assert run(command) == 2
    assert "no jpg/png/bmp/webp image" in capsys.readouterr().err
    (folder / "a.jpg").write_bytes(b"junk")
    assert run(command) == 2
    err = capsys.readouterr().err
    assert "none of the 1 images" in err and "a.jpg" in err
    assert not (tmp_path / "i.npz").exists()


def test_search_assigns_levels_with_the_checkpoint_level_policy(
    tmp_path, trained_checkpoint, gallery_dir, query_dir
) -> None:
    """A 41 px query against 128 px crops has rate 3.12: level 2 ("nearest", rate 3) by
    default, level 1 (rate 4) under the "lower" policy the datamodule was trained with."""
    checkpoint = torch.load(trained_checkpoint, weights_only=True)
    checkpoint["datamodule_hyper_parameters"]["level_policy"] = "lower"
    lower = tmp_path / "lower.ckpt"
    torch.save(checkpoint, lower)
    query = query_dir / "person0_h41.png"
    levels = {}
    for name, ckpt in (("nearest", trained_checkpoint), ("lower", lower)):
        index = tmp_path / f"{name}.npz"
        assert run(index_args(ckpt, gallery_dir, index, workers=None)) == 0
        assert GalleryIndex.load(index).level_policy == name
        assert run(search_args(index, query, tmp_path / name)) == 0
        levels[name] = json.loads((tmp_path / name / "results.json").read_text())["matches"][0][
            "level"
        ]
    assert levels == {"nearest": 2, "lower": 1}
    for option, expected in ((["--level", "3"], 3), (["--rate", "1"], 4)):  # overrides
        out = tmp_path / f"override{expected}"
        assert (
            run(
                ["search", "--index", str(index), "--query", str(query), "--out", str(out), *option]
            )
            == 0
        )
        assert json.loads((out / "results.json").read_text())["matches"][0]["level"] == expected
    assert (
        run(
            [
                "search",
                "--index",
                str(index),
                "--query",
                str(query),
                "--out",
                str(tmp_path / "bad"),
                "--rerank",
                "--rerank-lambda",
                "2",
            ]
        )
        == 2
    )
