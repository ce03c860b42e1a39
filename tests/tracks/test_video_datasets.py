"""Video dataset readers on tiny fake trees in the published layouts, and the schedules of the
mlr-video protocol."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.io import savemat

from rareid.data.readers.base import DatasetFormatError, DatasetNotFoundError
from rareid.data.readers.video import read_video_dataset
from rareid.tracks.protocol import schedule_rates


def _image(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.zeros((16, 8, 3), np.uint8))
    return path.name


def _mars(root: Path) -> Path:
    base = root / "MARS"
    tables = {}
    for split, folder, tracks in (
        ("train", "bbox_train", [(1, 1, 3), (1, 2, 2)]),
        ("test", "bbox_test", [(5, 1, 2), (5, 3, 3), (-1, 2, 1), (6, 4, 2)]),
    ):
        names, rows = [], []
        for track_number, (pid, camera, frames) in enumerate(tracks, start=1):
            start = len(names) + 1
            pid_text = "00-1" if pid == -1 else f"{pid:04d}"
            for frame in range(1, frames + 1):
                names.append(
                    _image(
                        base
                        / folder
                        / pid_text
                        / f"{pid_text}C{camera}T{track_number:04d}F{frame:03d}.jpg"
                    )
                )
            rows.append([start, len(names), pid, camera])
        (base / "info").mkdir(parents=True, exist_ok=True)
        (base / "info" / f"{split}_name.txt").write_text("\n".join(names) + "\n")
        tables[split] = np.asarray(rows, np.float64)
    savemat(base / "info" / "tracks_train_info.mat", {"track_train_info": tables["train"]})
    savemat(base / "info" / "tracks_test_info.mat", {"track_test_info": tables["test"]})
    savemat(base / "info" / "query_IDX.mat", {"query_IDX": np.asarray([[1, 3]], np.float64)})
    return base


def test_mars_tracks_query_and_junk(tmp_path: Path) -> None:
    _mars(tmp_path)
    splits = read_video_dataset("MARS", tmp_path)
    assert [(t.pid, t.camid, len(t.paths)) for t in splits.train] == [(1, 0, 3), (1, 1, 2)]
    assert [(t.pid, t.camid) for t in splits.gallery] == [(5, 0), (5, 2), (6, 3)]  # junk dropped
    assert [(t.pid, t.camid) for t in splits.query] == [(5, 0)]  # the junk query row too
    assert splits.train[0].paths[1].endswith("bbox_train/0001/0001C1T0001F002.jpg")
    assert Path(splits.train[0].paths[0]).is_file()
    assert "junk" in splits.summary()


def test_mars_bad_table_is_named(tmp_path: Path) -> None:
    base = _mars(tmp_path)
    savemat(
        base / "info" / "tracks_train_info.mat",
        {"track_train_info": np.asarray([[1, 99, 1, 1]], np.float64)},
    )
    with pytest.raises(DatasetFormatError, match=r"train_name\.txt"):
        read_video_dataset("mars", tmp_path)
    _mars(tmp_path)
    (base / "info" / "query_IDX.mat").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"query_IDX\.mat"):
        read_video_dataset("mars", tmp_path)


def test_duke_video(tmp_path: Path) -> None:
    base = tmp_path / "DukeMTMC-VideoReID"
    for split, pid, camera, track in (("train", 7, 2, 1), ("query", 9, 1, 3), ("gallery", 9, 5, 4)):
        for frame in (1, 2):
            _image(
                base
                / split
                / f"{pid:04d}"
                / f"{track:04d}"
                / f"{pid:04d}_C{camera}_T{track:04d}_F{frame:04d}.jpg"
            )
    splits = read_video_dataset("dukevideo", tmp_path)
    assert [(t.pid, t.camid, len(t.paths)) for t in splits.query] == [(9, 0, 2)]
    assert [(t.pid, t.camid) for t in splits.gallery] == [(9, 4)]
    _image(base / "train" / "0007" / "0002" / "frame.jpg")
    with pytest.raises(DatasetFormatError, match=r"frame\.jpg"):
        read_video_dataset("dukevideo", tmp_path)


@pytest.mark.parametrize(
    ("name", "folder", "cameras", "person"),
    [
        ("ilidsvid", "i-LIDS-VID/sequences", ("cam1", "cam2"), "person{:03d}"),
        ("prid2011", "prid_2011/multi_shot", ("cam_a", "cam_b"), "person_{:04d}"),
    ],
)
def test_two_camera_datasets_split_people_by_seed(
    tmp_path: Path, name: str, folder: str, cameras, person: str
) -> None:
    for side, camera in enumerate(cameras):
        for number in range(1, 7 + side * 2):  # the second camera sees two more people
            _image(tmp_path / folder / camera / person.format(number) / "0001.png")
    splits = read_video_dataset(name, tmp_path, split_seed=3)
    test_ids = {track.pid for track in splits.query}
    assert len(test_ids) == 3 and {t.pid for t in splits.gallery} == test_ids
    assert not test_ids & {track.pid for track in splits.train}
    assert {t.camid for t in splits.query} == {0} and {t.camid for t in splits.gallery} == {1}
    assert read_video_dataset(name, tmp_path, split_seed=3).query == splits.query
    with pytest.raises(DatasetNotFoundError):
        read_video_dataset(name, tmp_path / "nowhere")


def _two_camera_tree(root: Path, folder: str, cameras, person: str, count: int) -> None:
    for camera in cameras:
        for number in range(1, count + 1):
            _image(root / folder / camera / person.format(number) / "0001.png")


def test_ilidsvid_reads_the_release_people_splits(tmp_path: Path, capsys) -> None:
    _two_camera_tree(tmp_path, "i-LIDS-VID/sequences", ("cam1", "cam2"), "person{:03d}", 6)
    fallback = read_video_dataset("ilidsvid", tmp_path, split_seed=1)
    assert "no train-test people splits" in fallback.summary()
    assert "seeded random half split" in fallback.summary()
    folder = tmp_path / "train-test people splits"
    folder.mkdir()
    # two splits of the 6 sorted cam1 people, 1-based; the first half of a row is tested
    table = np.asarray([[1, 2, 3, 4, 5, 6], [6, 4, 2, 1, 3, 5]], np.float64)
    savemat(folder / "train_test_splits_ilidsvid.mat", {"ls_set": table})
    splits = read_video_dataset("ilidsvid", tmp_path, split_index=1)
    names = [Path(track.paths[0]).parent.name for track in splits.query]
    assert names == ["person002", "person004", "person006"]
    assert {Path(t.paths[0]).parent.name for t in splits.train} == {
        "person001",
        "person003",
        "person005",
    }
    assert [Path(t.paths[0]).parent.parent.name for t in splits.gallery] == ["cam2"] * 3
    assert "split 1 of 2 from" in splits.summary()
    first = read_video_dataset("ilidsvid", tmp_path, split_index=0)
    assert [t.pid for t in first.query] == [1, 2, 3]
    with pytest.raises(DatasetFormatError, match="split_index"):
        read_video_dataset("ilidsvid", tmp_path, split_index=2)
    savemat(folder / "train_test_splits_ilidsvid.mat", {"ls_set": table + 5})
    with pytest.raises(DatasetFormatError, match=r"train_test_splits_ilidsvid\.mat.*1\.\.6"):
        read_video_dataset("ilidsvid", tmp_path)


def test_prid2011_reads_splits_json_and_counts_people_left_out(tmp_path: Path, capsys) -> None:
    import json

    from tests.tracks.conftest import run_rareid

    _two_camera_tree(tmp_path, "prid_2011/multi_shot", ("cam_a", "cam_b"), "person_{:04d}", 5)
    splits_file = tmp_path / "splits_prid2011.json"
    document = [{"train": ["person_0001", "person_0002"], "test": ["person_0003", "person_0005"]}]
    splits_file.write_text(json.dumps(document))
    splits = read_video_dataset("prid2011", tmp_path)
    assert [Path(t.paths[0]).parent.name for t in splits.query] == ["person_0003", "person_0005"]
    assert len(splits.train) == 4 and "1 people in neither half" in splits.summary()
    splits_file.write_text(json.dumps([{"train": ["person_0009"], "test": ["person_0001"]}]))
    with pytest.raises(DatasetFormatError, match="person_0009"):
        read_video_dataset("prid2011", tmp_path)
    splits_file.write_text("{not json")
    with pytest.raises(DatasetFormatError, match=r"splits_prid2011\.json"):
        read_video_dataset("prid2011", tmp_path)
    argv = ["tracks", "evaluate", "--dataset", "prid2011", "--root", str(tmp_path)]
    assert run_rareid([*argv, "--ckpt", str(splits_file), "--split-index", "-1"]) == 2
    assert "--split-index" in capsys.readouterr().err


def test_schedules() -> None:
    rng = np.random.default_rng(0)
    constant = schedule_rates("constant", 5, (1, 2, 3, 4), rng)
    assert len(set(constant.tolist())) == 1 and constant[0] in (1, 2, 3, 4)
    assert set(schedule_rates("random", 200, (1, 2, 3, 4), rng).tolist()) == {1, 2, 3, 4}
    assert schedule_rates("ramp", 4, (1, 2, 3, 4), rng).tolist() == [4, 3, 2, 1]
    with pytest.raises(ValueError, match="schedule"):
        schedule_rates("zigzag", 3, (1, 2), rng)


def test_evaluate_command_on_a_fake_prid_tree(
    tiny_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    from rareid.data.synthetic import SyntheticWorld
    from tests.tracks.conftest import run_rareid

    world = SyntheticWorld(identities=8, seed=1, cameras=2, train_identities=4)
    for camera, folder in enumerate(("cam_a", "cam_b")):
        for pid in range(1, 9):
            for frame in range(4):
                path = (
                    tmp_path
                    / "prid_2011"
                    / "multi_shot"
                    / folder
                    / f"person_{pid:04d}"
                    / f"{frame:04d}.png"
                )
                path.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(
                    str(path), cv2.cvtColor(world.render(pid, camera, frame), cv2.COLOR_RGB2BGR)
                )
    out = tmp_path / "scores.json"
    argv = [
        "tracks",
        "evaluate",
        "--dataset",
        "prid2011",
        "--root",
        str(tmp_path),
        "--ckpt",
        str(tiny_checkpoint),
    ]
    assert run_rareid([*argv, "--trials", "2", "--out", str(out)]) == 0
    import json

    summary = json.loads(out.read_text())["summary"]
    assert set(summary) == {"constant", "random", "ramp"}
    assert set(summary["ramp"]) == {"average", "max", "level-aware", "single-frame"}
    assert summary["ramp"]["average"]["rank1_std"] == 0.0  # the ramp draws nothing
    # one rate per tracklet: every frame weighs the same, so level-aware is the average
    assert summary["constant"]["level-aware"] == summary["constant"]["average"]
    assert set(summary["random"]["max"]) >= {"rank5_mean", "rank10_mean", "mAP_std"}
    assert all(
        0 <= scores["mAP_mean"] <= 100 for table in summary.values() for scores in table.values()
    )
    capsys.readouterr()
    assert run_rareid([*argv[:5], str(tmp_path / "none"), *argv[6:]]) == 2
    assert "none" in capsys.readouterr().err
