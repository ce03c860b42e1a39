"""``rareid tracks index|search|link|synth`` end to end on a small synthetic video with a tiny
checkpoint, and their one-line usage errors (exit 2)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from rareid.tracks.index import TrackIndex
from tests.tracks.conftest import run_rareid


def _index(checkpoint: Path, out: Path, *source: str) -> int:
    return run_rareid(["tracks", "index", *source, "--ckpt", str(checkpoint), "--out", str(out)])


def test_synthetic_video_is_reproducible_and_consistent(video_root: Path, tmp_path: Path) -> None:
    from rareid.data.synthetic.video import write_synthetic_video

    write_synthetic_video(tmp_path, identities=12, walkers=3, cameras=2, passers_by=1, seed=0)
    frame = "frames/cam1/000020.jpg"
    assert (tmp_path / frame).read_bytes() == (video_root / frame).read_bytes()
    rows = [line.split(",") for line in (video_root / "gt" / "cam1.txt").read_text().splitlines()]
    heights = {}
    for row in rows:
        heights.setdefault(row[1], []).append(int(row[5]))
        crop = video_root / "tracks" / "cam1" / row[1] / f"{int(row[0]):06d}.jpg"
        assert crop.is_file()
    assert max(max(h) / min(h) for h in heights.values()) > 2  # someone walks towards or away
    with open(video_root / "identities.csv") as stream:
        pids = {row["pid"] for row in csv.DictReader(stream)}
    assert pids == {"0", "7", "8", "9"}  # test identities of a 12-identity world, and strangers


def test_index_search_link_from_crop_folders(
    tiny_checkpoint: Path, video_root: Path, tmp_path: Path
) -> None:
    index_path = tmp_path / "tracks.npz"
    assert _index(tiny_checkpoint, index_path, "--tracks", str(video_root / "tracks")) == 0
    index = TrackIndex.load(index_path)
    assert len(index) == 8 and set(index.cameras) == {"cam1", "cam2"}
    assert len(set(index.levels.tolist())) >= 3  # frames of one walk land on several levels
    gt_boxes = sum(
        len((video_root / "gt" / f"{c}.txt").read_text().splitlines()) for c in ("cam1", "cam2")
    )
    assert index.embeddings.shape[0] == gt_boxes
    out = tmp_path / "matches"
    argv = [
        "tracks",
        "search",
        "--index",
        str(index_path),
        "--query",
        str(video_root / "tracks" / ".."),
        "--out",
        str(out),
    ]
    argv[5] = str(video_root / "tracks")
    assert run_rareid([*argv, "--top-k", "3", "--threshold", "1e9", "--html"]) == 0
    rows = json.loads((out / "matches.json").read_text())
    page = (out / "index.html").read_text()
    data = json.loads(page.split('id="rareid-data">', 1)[1].split("</script>", 1)[0])
    assert len(data["queries"]) == 8 and data["labels"] is False
    for query in data["queries"]:
        assert (out / query["thumb"]).is_file() and query["size"].endswith(" frames")
        assert [m["v"] for m in query["matches"]] == ["same"] * 3
    assert len(rows) == 8 * 3 and (out / "rank_sheet_001.png").is_file()
    assert all(
        (row["query_camera"], row["query_track"]) != (row["gallery_camera"], row["gallery_track"])
        for row in rows
    )
    assert {row["verdict"] for row in rows} == {"same"}
    assert all(1 <= row["level"] <= 4 and row["query_frames"] >= 1 for row in rows)
    assert run_rareid(argv) == 2  # results already there, no --overwrite
    links = tmp_path / "ids.csv"
    assert run_rareid(["tracks", "link", "--index", str(index_path), "--out", str(links)]) == 0
    with open(links) as stream:
        table = list(csv.DictReader(stream))
    assert len(table) == 8 and {"camera", "track_id", "global_id"} <= set(table[0])
    for first in table:
        for second in table:
            if (
                first is not second
                and first["camera"] == second["camera"]
                and first["global_id"] == second["global_id"]
            ):
                spans = [
                    index.span(index.keys().index((row["camera"], row["track_id"])))
                    for row in (first, second)
                ]
                assert spans[0][1] < spans[1][0] or spans[1][1] < spans[0][0]


def test_index_video_with_mot_add_and_link_writes_mot(
    tiny_checkpoint: Path, video_root: Path, tmp_path: Path
) -> None:
    index_path = tmp_path / "video.npz"
    for camera in ("cam1", "cam2"):
        argv = [
            "--video",
            str(video_root / "frames" / camera),
            "--mot",
            str(video_root / "gt" / f"{camera}.txt"),
        ]
        extra = ["--add"] if camera == "cam2" else []
        assert _index(tiny_checkpoint, index_path, *argv, *extra) == 0
    assert (
        _index(tiny_checkpoint, index_path, "--tracks", str(video_root / "tracks")) == 2
    )  # exists
    assert _index(tiny_checkpoint, index_path, "--tracks", str(video_root / "tracks"), "--add") == 0
    index = TrackIndex.load(index_path)
    assert len(index) == 8  # the crop folders replaced the video's tracks (same camera, track)
    assert (
        run_rareid(["tracks", "link", "--index", str(index_path), "--out", str(tmp_path / "g.csv")])
        == 0
    )
    assert not (tmp_path / "g_mot").exists()  # crop folders carry frame numbers, not boxes
    video_only = tmp_path / "only.npz"
    camera = video_root / "frames" / "cam1"
    assert (
        _index(
            tiny_checkpoint,
            video_only,
            "--video",
            str(camera),
            "--mot",
            str(video_root / "gt" / "cam1.txt"),
        )
        == 0
    )
    assert (
        run_rareid(["tracks", "link", "--index", str(video_only), "--out", str(tmp_path / "v.csv")])
        == 0
    )
    lines = (tmp_path / "v_mot" / "cam1.txt").read_text().splitlines()
    gt = (video_root / "gt" / "cam1.txt").read_text().splitlines()
    assert len(lines) == len(gt) and all(len(line.split(",")) == 10 for line in lines)
    assert np.all(np.diff([int(line.split(",")[0]) for line in lines]) >= 0)


def test_index_min_conf_counts_what_it_skips(
    tiny_checkpoint: Path, video_root: Path, tmp_path: Path, capsys
) -> None:
    rows = (video_root / "gt" / "cam1.txt").read_text().splitlines()
    weak = [f"{','.join(row.split(',')[:6])},0.2,-1,-1,-1" for row in rows[::2]]
    mot = tmp_path / "scored.txt"
    mot.write_text("\n".join(weak + rows[1::2]) + "\n")
    frames = str(video_root / "frames" / "cam1")
    out = tmp_path / "conf.npz"
    assert (
        _index(tiny_checkpoint, out, "--video", frames, "--mot", str(mot), "--min-conf", "0.5") == 0
    )
    assert f"{len(weak)} boxes below --min-conf skipped" in capsys.readouterr().err
    index = TrackIndex.load(out)
    assert index.levels.size == len(rows) - len(weak)
    assert any("below --min-conf" in line for line in index.problems)
    crops = str(video_root / "tracks")
    assert _index(tiny_checkpoint, tmp_path / "y.npz", "--tracks", crops, "--min-conf", "1") == 2
    assert "--min-conf" in capsys.readouterr().err


def test_bad_input_is_one_line_and_exit_2(
    tiny_checkpoint: Path, video_root: Path, tmp_path: Path, capsys
) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("1,1,10,10,20,30,1,-1,-1,-1\n2,1,10,10\n")
    frames = str(video_root / "frames" / "cam1")
    assert _index(tiny_checkpoint, tmp_path / "x.npz", "--video", frames, "--mot", str(bad)) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "bad.txt:2" in error[0]
    assert _index(tiny_checkpoint, tmp_path / "x.npz", "--video", frames) == 2
    assert "--mot" in capsys.readouterr().err
    assert (
        _index(tmp_path / "none.ckpt", tmp_path / "x.npz", "--tracks", str(video_root / "tracks"))
        == 2
    )
    assert "none.ckpt" in capsys.readouterr().err
    assert run_rareid(["tracks", "search", "--index", str(bad), "--query", frames]) == 2
    assert "bad.txt" in capsys.readouterr().err
    assert run_rareid(["tracks", "nothing"]) == 2
    assert not (tmp_path / "x.npz").exists()


def test_every_tracks_option_has_help() -> None:
    import importlib

    from rareid.commands.tracks import SUBCOMMANDS

    for name, (module, _) in SUBCOMMANDS.items():
        parser = importlib.import_module(module).build_parser()
        for action in parser._actions:
            assert (action.help or "").strip(), f"rareid tracks {name}: {action.dest} has no help"


def test_synth_command_and_its_usage_errors(tmp_path: Path, capsys) -> None:
    out = tmp_path / "video"
    argv = ["tracks", "synth", "--out", str(out), "--identities", "12", "--cameras", "2"]
    assert run_rareid([*argv, "--walkers", "1", "--passers-by", "0"]) == 0
    assert (out / "gt" / "cam2.txt").read_text().count("\n") > 10
    assert "2 cameras" in capsys.readouterr().out
    assert run_rareid([*argv, "--walkers", "7"]) == 2  # a 12-identity world has 6 test ids
    assert "--walkers" in capsys.readouterr().err


def test_search_with_a_query_index_and_level_aware_default(
    tiny_checkpoint: Path, video_root: Path, tmp_path: Path
) -> None:
    gallery, query = tmp_path / "g.npz", tmp_path / "q.npz"
    frames = video_root / "frames"
    assert (
        _index(
            tiny_checkpoint,
            gallery,
            "--video",
            str(frames / "cam2"),
            "--mot",
            str(video_root / "gt" / "cam2.txt"),
        )
        == 0
    )
    assert (
        _index(
            tiny_checkpoint,
            query,
            "--video",
            str(frames / "cam1"),
            "--mot",
            str(video_root / "gt" / "cam1.txt"),
        )
        == 0
    )
    out = tmp_path / "m"
    assert (
        run_rareid(
            [
                "tracks",
                "search",
                "--index",
                str(gallery),
                "--query",
                str(query),
                "--out",
                str(out),
                "--top-k",
                "2",
            ]
        )
        == 0
    )
    with open(out / "matches.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 4 * 2 and {row["query_camera"] for row in rows} == {"cam1"}
    assert {row["verdict"] for row in rows} == {"uncalibrated"}
    distances = [
        [float(row["distance"]) for row in rows if row["query_track"] == track]
        for track in {r["query_track"] for r in rows}
    ]
    assert all(first <= second for first, second in distances)
