"""``rareid calibrate --tracks-index``: thresholds fitted on pooled distances of labelled
tracklets, stored in the index, and the same/different verdicts of ``rareid tracks search``
and ``link`` that follow from them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from rareid.tracks.index import THUMBNAIL_SIZE, THUMBNAILS, TrackIndex
from tests.tracks.conftest import run_rareid

PEOPLE, FRAMES = 12, 3


def _index(
    path: Path, people: int = PEOPLE, cameras: tuple[str, ...] = ("north", "south")
) -> TrackIndex:
    """Two cameras, one tracklet per person each; frames scattered around a person's vector
    (level 4), so that people separate well at every prefix."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(PEOPLE, 16)).astype(np.float32)
    embeddings, track_of, track_cameras, track_ids = [], [], [], []
    for camera in cameras:
        for person in range(people):
            track = len(track_ids)
            noise = 0.15 * rng.normal(size=(FRAMES, 16)).astype(np.float32)
            embeddings.append(centres[person] + noise)
            track_of += [track] * FRAMES
            track_cameras.append(camera)
            track_ids.append(str(100 * (camera == "south") + person))
    rows = len(track_of)
    index = TrackIndex(
        embeddings=np.concatenate(embeddings),
        levels=np.full(rows, 4, np.int64),
        rates=np.ones(rows),
        frames=np.tile(np.arange(1, FRAMES + 1), len(track_ids)),
        boxes=np.full((rows, 4), -1, np.int64),
        sizes=np.full((rows, 2), 128, np.int64),
        track_of=np.asarray(track_of, np.int64),
        cameras=track_cameras,
        track_ids=track_ids,
        thumbnails=np.zeros((len(track_ids), THUMBNAILS, *THUMBNAIL_SIZE, 3), np.uint8),
        known_rates=[1.0, 2.0, 3.0, 4.0],
        split_sizes=[4, 4, 4, 4],
        checkpoint_sha256="0" * 64,
    )
    index.save(path)
    return index


def _labels(path: Path, index: TrackIndex, blank: int = 0) -> Path:
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["camera", "track_id", "pid"])
        for number, (camera, track_id) in enumerate(index.keys()):
            person = int(track_id) % 100
            writer.writerow([camera, track_id, "" if number < blank else person])
    return path


def test_tracklet_thresholds_give_search_and_link_verdicts(tmp_path: Path, capsys) -> None:
    index_path = tmp_path / "tracks.npz"
    index = _index(index_path)
    labels = _labels(tmp_path / "labels.csv", index, blank=2)
    for command in ("search", "link"):
        argv = ["tracks", command, "--index", str(index_path), "--far", "0.05"]
        argv += ["--query", str(index_path)] if command == "search" else []
        assert run_rareid([*argv, "--out", str(tmp_path / "x")]) == 2  # nothing calibrated yet
        assert "holds no calibration" in capsys.readouterr().err
    calibrate = ["calibrate", "--tracks-index", str(index_path), "--labels", str(labels)]
    assert run_rareid([*calibrate, "--far", "0.05"]) == 0
    printed = capsys.readouterr().out
    assert "2 rows with no person skipped" in printed and "pooling level-aware" in printed
    stored = TrackIndex.load(index_path).calibration
    assert stored["kind"] == "tracklets" and stored["min_frames"] == 2
    level = stored["levels"]["4"]  # every pair is compared at level 4 here
    assert level["genuine_pairs"] == PEOPLE - 2 and level["thresholds"]
    assert (
        json.loads((tmp_path / "tracks_calibration.json").read_text())["pooling"] == "level-aware"
    )
    assert (tmp_path / "tracks_calibration.png").is_file()

    queries = tmp_path / "queries.npz"
    _index(queries, people=3, cameras=("north",))
    search = ["tracks", "search", "--index", str(index_path), "--query", str(queries)]
    search += ["--top-k", "10"]
    assert run_rareid([*search, "--far", "0.05", "--out", str(tmp_path / "m")]) == 0
    with open(tmp_path / "m" / "matches.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert {row["verdict"] for row in rows} == {"same", "different"}
    threshold = next(iter(level["thresholds"].values()))  # the one FAR asked for
    for row in rows:
        assert row["level"] == "4"
        assert (row["verdict"] == "same") == (float(row["distance"]) <= threshold)
        if int(row["query_track"]) % 100 == int(row["gallery_track"]) % 100:
            assert row["verdict"] == "same"  # every genuine pair is far inside the threshold
    capsys.readouterr()
    # thresholds hold for the pooling they were fitted with only
    out = str(tmp_path / "max")
    assert (
        run_rareid([*search, "--far", "0.05", "--pooling", "max", "--top-k", "1", "--out", out])
        == 0
    )
    assert "calibrated for --pooling level-aware" in capsys.readouterr().err
    with open(tmp_path / "max" / "matches.csv") as stream:
        assert {row["verdict"] for row in csv.DictReader(stream)} == {"uncalibrated"}

    link = ["tracks", "link", "--index", str(index_path), "--out", str(tmp_path / "ids.csv")]
    assert run_rareid([*link, "--far", "0.05"]) == 0
    with open(tmp_path / "ids.csv") as stream:
        found = {
            (row["camera"], row["track_id"]): row["global_id"] for row in csv.DictReader(stream)
        }
    for person in range(PEOPLE):
        assert found[("north", str(person))] == found[("south", str(100 + person))]
    assert len(set(found.values())) == PEOPLE


@pytest.mark.parametrize(
    ("extra", "labels_text", "message"),
    [
        ([], "camera,track_id,pid\nnorth,7,7\nnorth,7,7\n", r"labels.csv:3: .*labelled twice"),
        ([], "camera,track_id,pid\neast,1,1\n", r"labels.csv:2: tracklet east/1 is not in"),
        ([], "camera,person\nnorth,1\n", r"labels.csv:1: expected a header"),
        ([], "camera,track_id,pid\nnorth,1,1\nsouth,101,1\n", r"1 person"),
        (["--ckpt", "x.ckpt"], "camera,track_id,pid\n", r"--ckpt and --tracks-index"),
        (["--pooling", "median"], "camera,track_id,pid\n", r"--pooling: expected one of"),
    ],
)
def test_bad_tracklet_labels_are_one_line(
    tmp_path: Path, capsys, extra: list[str], labels_text: str, message: str
) -> None:
    import re

    index_path = tmp_path / "tracks.npz"
    _index(index_path)
    labels = tmp_path / "labels.csv"
    labels.write_text(labels_text)
    argv = ["calibrate", "--tracks-index", str(index_path), "--labels", str(labels), *extra]
    assert run_rareid(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and re.search(message, error[0]), error
    assert TrackIndex.load(index_path).calibration is None
