"""Tracklet readers: crop folders, MOT files, videos and frame folders, arrays; bad input is
one line naming the file and line, clipped and skipped boxes are counted."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from rareid.tracks.readers import (
    frame_number,
    read_crop_tracks,
    read_mot,
    read_video_tracks,
    tracks_from_arrays,
)
from rareid.tracks.tracklet import TrackInputError, clip_box


def _write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


def _frames(folder: Path, count: int, size: tuple[int, int] = (60, 80)) -> list[np.ndarray]:
    images = []
    for number in range(1, count + 1):
        image = np.full((*size, 3), 10 * number, np.uint8)
        _write(folder / f"{number:04d}.png", image)
        images.append(image)
    return images


def test_crop_folders_give_tracks_frames_and_count_unreadable(tmp_path: Path) -> None:
    for camera, track, frames in (("c1", "7", (3, 5)), ("c2", "x", (1,))):
        for frame in frames:
            _write(
                tmp_path / camera / track / f"0001C1T0007F{frame:03d}.jpg",
                np.zeros((40, 20, 3), np.uint8),
            )
    (tmp_path / "c1" / "7" / "bad.jpg").write_bytes(b"not a jpeg")
    tracks, report = read_crop_tracks(tmp_path)
    assert [track.key for track in tracks] == [("c1", "7"), ("c2", "x")]
    assert tracks[0].frames == [3, 5] and tracks[0].span() == (3, 5)
    assert tracks[0].crops[0].shape == (40, 20, 3)
    assert report.counts["unreadable crop files skipped"] == 1
    assert "bad.jpg" in report.lines()[0]


def test_crop_folder_without_a_readable_image_is_named(tmp_path: Path) -> None:
    (tmp_path / "c1" / "9").mkdir(parents=True)
    (tmp_path / "c1" / "9" / "a.jpg").write_bytes(b"junk")
    with pytest.raises(TrackInputError, match=r"c1/9.*no readable image"):
        read_crop_tracks(tmp_path)


def test_frame_number_is_the_last_digits() -> None:
    assert frame_number("0001C1T0001F017.jpg") == 17
    assert frame_number("000123.jpg") == 123
    assert frame_number("person.jpg") == -1


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1,1,0,0,10,20,1,-1,-1", None),  # 9 columns: ground truth, accepted
        ("1,1,0,0,10,20", r"mot.txt:2: expected 9 or 10 .* got 6"),
        ("1,a,0,0,10,20,1,-1,-1,-1", r"mot.txt:2: frame, id and box must be numbers"),
        ("0,1,0,0,10,20,1,-1,-1,-1", r"mot.txt:2: frame must be a whole number >= 1"),
        ("1,1,0,0,0,20,1,-1,-1,-1", r"mot.txt:2: box width and height must be positive"),
    ],
)
def test_mot_lines_are_checked(tmp_path: Path, line: str, message: str | None) -> None:
    path = tmp_path / "mot.txt"
    path.write_text(f"1,2,0,0,10,20,1,-1,-1,-1\n{line}\n")
    if message is None:
        assert sorted(track for track, _, _ in read_mot(path)[1]) == ["1", "2"]
    else:
        with pytest.raises(TrackInputError, match=message):
            read_mot(path)


def test_clip_box_clips_and_skips() -> None:
    assert clip_box((-5, 10, 20, 20), 50, 50) == ((0, 10, 15, 20), True)
    assert clip_box((5, 5, 10, 10), 50, 50) == ((5, 5, 10, 10), False)
    assert clip_box((60, 5, 10, 10), 50, 50) == (None, True)


def test_frames_folder_cuts_native_crops_and_counts_problems(tmp_path: Path) -> None:
    _frames(tmp_path / "frames", 3)
    mot = tmp_path / "gt.txt"
    mot.write_text(
        "1,4,10,5,20,40,1,-1,-1,-1\n"
        "2,4,70,5,20,40,1,-1,-1,-1\n"  # partly outside: clipped to 10 px wide
        "3,4,200,5,20,40,1,-1,-1,-1\n"  # wholly outside: skipped
        "9,4,10,5,20,40,1,-1,-1,-1\n"  # after the last frame: skipped
    )
    tracks, report = read_video_tracks(tmp_path / "frames", mot, camera="north")
    assert len(tracks) == 1 and tracks[0].key == ("north", "4")
    assert [crop.shape[:2] for crop in tracks[0].crops] == [(40, 20), (40, 10)]
    assert tracks[0].frames == [1, 2] and tracks[0].boxes[1] == (70, 5, 10, 40)
    assert int(tracks[0].crops[1][0, 0, 0]) == 20  # cut from frame 2
    assert report.counts["boxes clipped to the frame"] == 1
    assert report.counts["boxes outside the frame skipped"] == 1
    assert sum("after the last one" in kind for kind in report.counts) == 1
    assert any("gt.txt:4" in line for line in report.lines())


def test_video_file_is_decoded(tmp_path: Path) -> None:
    path = tmp_path / "cam.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (80, 60))
    if not writer.isOpened():
        pytest.skip("this OpenCV build writes no MJPG video")
    for number in range(1, 5):
        writer.write(np.full((60, 80, 3), 40 * number, np.uint8))
    writer.release()
    mot = tmp_path / "gt.txt"
    mot.write_text("".join(f"{frame},1,10,10,20,30,1,-1,-1,-1\n" for frame in (1, 4)))
    tracks, _ = read_video_tracks(path, mot)
    assert tracks[0].camera == "cam" and tracks[0].frames == [1, 4]
    assert abs(int(tracks[0].crops[1][5, 5].mean()) - 160) < 12


def test_undecodable_video_is_named(tmp_path: Path) -> None:
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"\x00" * 100)
    mot = tmp_path / "gt.txt"
    mot.write_text("1,1,10,10,20,30,1,-1,-1,-1\n")
    with pytest.raises(TrackInputError, match=r"broken\.mp4"):
        read_video_tracks(path, mot)


def test_arrays_give_the_same_tracks_as_files(tmp_path: Path) -> None:
    images = [np.full((60, 80, 3), 30 * number, np.uint8) for number in range(1, 4)]
    boxes = [(1, 5, 0, 0, 10, 20), (3, 5, 5, 5, 10, 20), (2, 6, 70, 0, 30, 20)]
    tracks, report = tracks_from_arrays(images, boxes, camera="k")
    assert [track.key for track in tracks] == [("k", "5"), ("k", "6")]
    assert tracks[0].frames == [1, 3] and int(tracks[0].crops[1][0, 0, 0]) == 90
    assert report.counts["boxes clipped to the frame"] == 1
    with pytest.raises(TrackInputError, match="rows"):
        tracks_from_arrays(images, [(1, 2, 3)])


def test_mot_confidence_filter_and_ignored_ground_truth(tmp_path: Path) -> None:
    from rareid.tracks.readers import BELOW_MIN_CONF, IGNORED_GT
    from rareid.tracks.tracklet import InputReport

    tracker = tmp_path / "tracker.txt"
    tracker.write_text(
        "1,1,0,0,10,20,0.9,-1,-1,-1\n1,2,0,0,10,20,0.3,-1,-1,-1\n2,2,0,0,10,20,0,-1,-1,-1\n"
    )
    report = InputReport()
    assert sum(map(len, read_mot(tracker, report=report).values())) == 3  # no filter: all
    kept = read_mot(tracker, min_conf=0.5, report=report)
    assert [track for track, _, _ in kept[1]] == ["1"] and 2 not in kept
    assert report.counts[BELOW_MIN_CONF] == 2 and "tracker.txt:2" in report.lines()[0]
    truth = tmp_path / "gt.txt"  # 9 columns: conf 0 marks a box to ignore
    truth.write_text("1,1,0,0,10,20,1,1,1.0\n1,2,0,0,10,20,0,7,0.5\n")
    report = InputReport()
    assert [track for track, _, _ in read_mot(truth, report=report)[1]] == ["1"]
    assert report.counts[IGNORED_GT] == 1
    report = InputReport()
    assert len(read_mot(tracker, ground_truth=True, report=report)[1]) == 2
    assert report.counts[IGNORED_GT] == 1  # a 10-column file said to be ground truth
    with pytest.raises(TrackInputError, match=r"holds no box left after skipping 3"):
        read_mot(tracker, min_conf=2.0)
    truth.write_text("1,1,0,0,10,20,x,1,1.0\n")
    with pytest.raises(TrackInputError, match=r"gt.txt:1: conf"):
        read_mot(truth)
