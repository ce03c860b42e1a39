"""Tracklets from disk or memory: crop folders, a video or frames with a tracker's MOT file,
or arrays.

* ``read_crop_tracks(root)``: ``root/<camera>/<track_id>/*.jpg`` (the MARS and
  DukeMTMC-VideoReID shape); a crop's frame number is the last run of digits in its file name
  when there is one.
* ``read_mot(path)``: a tracker's output in the MOTChallenge format, ``frame, id, bb_left,
  bb_top, bb_width, bb_height, conf, x, y, z`` (1-based frames; the 9-column ground-truth
  variant is accepted too); ``min_conf`` drops weak detections and a ground-truth file's
  ignored boxes (``conf`` 0) are skipped, both counted.
* ``read_video_tracks(video, mot)``: crops cut from a video file (``cv2.VideoCapture``) or a
  folder of frames, each box keeping its native size.
* ``tracks_from_arrays(frames, boxes)``: the same from RGB arrays in Python.

Bad input raises :class:`TrackInputError` with one line naming the file (and line); boxes
outside the frame and unreadable crop files are counted in an :class:`InputReport`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from rareid.tracks.tracklet import InputReport, TrackInputError, Tracklet, cut_crops

#: Crop and frame file suffixes (lower case).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
#: Column counts of MOTChallenge files: tracker output (10) and ground truth (9).
MOT_COLUMNS = (9, 10)
_DIGITS = re.compile(r"(\d+)(?!.*\d)")


def _images(folder: Path) -> list[Path]:
    return sorted(
        path
        for path in folder.iterdir()
        if path.is_file()
        and path.suffix.lower() in IMAGE_SUFFIXES
        and not path.name.startswith(".")
    )


def frame_number(name: str) -> int:
    """The last run of digits in a file stem (``0001C1T0001F017`` -> 17), ``-1`` if none."""
    found = _DIGITS.search(Path(name).stem)
    return int(found.group(1)) if found else -1


def read_rgb(path: Path) -> np.ndarray | None:
    """An image file as RGB uint8, ``None`` when it cannot be decoded."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_crop_tracks(
    root: str | os.PathLike, report: InputReport | None = None
) -> tuple[list[Tracklet], InputReport]:
    """Every ``root/<camera>/<track_id>/`` folder of crops as a tracklet.

    Unreadable crop files are skipped and counted; a track folder with no readable crop is
    a :class:`TrackInputError` naming it (an empty track cannot be matched).
    """
    report = report or InputReport()
    base = Path(root)
    if not base.is_dir():
        raise TrackInputError(f"{str(base)!r} is not a folder of <camera>/<track_id>/ crops")
    tracks: list[Tracklet] = []
    for camera in sorted(path for path in base.iterdir() if path.is_dir()):
        for folder in sorted(path for path in camera.iterdir() if path.is_dir()):
            track = Tracklet(camera.name, folder.name)
            files = _images(folder)
            for file in files:
                image = read_rgb(file)
                if image is None:
                    report.note("unreadable crop files skipped", str(file))
                    continue
                track.add(image, frame_number(file.name), source=str(file))
            if not len(track):
                what = "holds no image" if not files else "has no readable image"
                raise TrackInputError(f"track folder {str(folder)!r} {what}")
            tracks.append(track)
    if not tracks:
        raise TrackInputError(f"no <camera>/<track_id>/ folder of crops under {str(base)!r}")
    return tracks, report


#: Report kinds of the boxes a MOT file's confidence column leaves out.
IGNORED_GT = "ground-truth boxes marked ignored (conf 0) skipped"
BELOW_MIN_CONF = "boxes below --min-conf skipped"


def _kept_by_confidence(
    cells: list[str],
    where: str,
    min_conf: float | None,
    ground_truth: bool | None,
    report: InputReport,
) -> bool:
    """Whether a MOT line's box is used: ground truth (9 columns, or ``ground_truth``) marks
    boxes to ignore with ``conf`` 0; ``min_conf`` drops detections below it. Both counted."""
    is_truth = len(cells) == 9 if ground_truth is None else ground_truth
    if min_conf is None and not is_truth:
        return True
    try:
        confidence = float(cells[6])
    except ValueError:
        raise TrackInputError(
            f"{where}: conf (column 7) must be a number, got {cells[6]!r}"
        ) from None
    if is_truth and confidence == 0:
        report.note(IGNORED_GT, where)
        return False
    if min_conf is not None and confidence < min_conf:
        report.note(BELOW_MIN_CONF, where)
        return False
    return True


def read_mot(
    path: str | os.PathLike,
    min_conf: float | None = None,
    ground_truth: bool | None = None,
    report: InputReport | None = None,
) -> dict[int, list[tuple[str, tuple[float, ...], str]]]:
    """A MOTChallenge file as ``{frame: [(track_id, (left, top, width, height), "file:line")]}``.

    A line with another number of columns, a value that is not a number, a frame below 1 or a
    box without area is a :class:`TrackInputError` naming the file and line. Boxes with a
    ``conf`` below ``min_conf``, and the boxes a ground-truth file marks ignored (``conf`` 0;
    a 9-column file is ground truth, ``ground_truth`` says so of a 10-column one), are
    skipped and counted in ``report``.
    """
    report = report if report is not None else InputReport()
    file = Path(path)
    if not file.is_file():
        raise TrackInputError(f"MOT file {str(file)!r} does not exist")
    boxes: dict[int, list[tuple[str, tuple[float, ...], str]]] = {}
    with open(file, encoding="utf-8", errors="replace") as stream:
        for number, line in enumerate(stream, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            where = f"{file}:{number}"
            cells = [cell.strip() for cell in text.split(",")]
            if len(cells) not in MOT_COLUMNS:
                raise TrackInputError(
                    f"{where}: expected {' or '.join(map(str, MOT_COLUMNS))} comma-separated "
                    f"columns (frame,id,bb_left,bb_top,bb_width,bb_height,conf,x,y,z), "
                    f"got {len(cells)}"
                )
            try:
                values = [float(cell) for cell in cells[:6]]
            except ValueError:
                raise TrackInputError(
                    f"{where}: frame, id and box must be numbers: {text!r}"
                ) from None
            frame, identity, left, top, width, height = values
            if frame < 1 or frame != int(frame):
                raise TrackInputError(f"{where}: frame must be a whole number >= 1, got {cells[0]}")
            if not (width > 0 and height > 0):
                raise TrackInputError(f"{where}: box width and height must be positive: {text!r}")
            if not _kept_by_confidence(cells, where, min_conf, ground_truth, report):
                continue
            track_id = str(int(identity)) if identity == int(identity) else cells[1]
            boxes.setdefault(int(frame), []).append((track_id, (left, top, width, height), where))
    if not boxes:
        left_out = report.counts[IGNORED_GT] + report.counts[BELOW_MIN_CONF]
        why = f" left after skipping {left_out} by their conf" if left_out else ""
        raise TrackInputError(f"MOT file {str(file)!r} holds no box{why}")
    return boxes


def _video_frames(source: Path) -> Iterator[tuple[int, np.ndarray]]:
    """``(1-based frame number, RGB frame)`` of a video file or a folder of frame images
    (sorted by name; a frame's number is its position)."""
    if source.is_dir():
        for number, file in enumerate(_images(source), start=1):
            image = read_rgb(file)
            if image is None:
                raise TrackInputError(f"frame {str(file)!r} cannot be decoded")
            yield number, image
        return
    if not source.is_file():
        raise TrackInputError(f"video {str(source)!r} does not exist")
    capture = cv2.VideoCapture(str(source))
    try:
        if not capture.isOpened():
            raise TrackInputError(f"video {str(source)!r} cannot be opened or decoded")
        number = 0
        while True:
            ok, image = capture.read()
            if not ok:
                break
            number += 1
            yield number, cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        if number == 0:
            raise TrackInputError(f"video {str(source)!r} has no decodable frame")
    finally:
        capture.release()


def _finish(
    tracks: dict[str, Tracklet],
    pending: dict[int, list[tuple[str, tuple[float, ...], str]]],
    last_frame: int,
    report: InputReport,
    source: str,
) -> list[Tracklet]:
    for frame in sorted(pending):
        if frame > last_frame:
            for _, _, where in pending[frame]:
                report.note(f"boxes on frames after the last one of {source} skipped", where)
    if not tracks:
        raise TrackInputError(f"{source}: no box of the MOT file falls inside a frame")
    return sorted(tracks.values(), key=lambda track: _track_order(track.track_id))


def _track_order(track_id: str) -> tuple[int, str]:
    return (int(track_id), "") if track_id.isdigit() else (1 << 62, track_id)


def read_video_tracks(
    video: str | os.PathLike,
    mot: str | os.PathLike,
    camera: str | None = None,
    report: InputReport | None = None,
    min_conf: float | None = None,
    ground_truth: bool | None = None,
) -> tuple[list[Tracklet], InputReport]:
    """The tracklets of one camera: each MOT box cut from its frame of ``video`` (a file or a
    folder of frames). ``camera`` defaults to the video's name without suffix; ``min_conf``
    and ``ground_truth`` as in :func:`read_mot`."""
    report = report or InputReport()
    source = Path(video)
    boxes = read_mot(mot, min_conf, ground_truth, report)
    name = camera or source.stem
    tracks: dict[str, Tracklet] = {}
    last = 0
    for number, frame in _video_frames(source):
        last = number
        if number in boxes:
            cut_crops(frame, number, boxes[number], tracks, name, report)
    return _finish(tracks, boxes, last, report, str(source)), report


def tracks_from_arrays(
    frames: Sequence[np.ndarray],
    boxes: Sequence[Sequence[float]] | np.ndarray,
    camera: str = "0",
    report: InputReport | None = None,
) -> tuple[list[Tracklet], InputReport]:
    """Tracklets from RGB frames (``frames[i]`` is frame ``i + 1``) and rows ``(frame, id,
    left, top, width, height)`` (1-based frames, as in MOT files)."""
    report = report or InputReport()
    table = np.asarray(boxes, dtype=np.float64)
    if table.ndim != 2 or table.shape[1] < 6:
        raise TrackInputError(
            f"boxes: expected rows (frame, id, left, top, width, height), got shape {table.shape}"
        )
    grouped: dict[int, list[tuple[str, tuple[float, ...], str]]] = {}
    for row_number, row in enumerate(table):
        frame = int(row[0])
        if frame < 1 or not (row[4] > 0 and row[5] > 0):
            raise TrackInputError(f"boxes row {row_number}: frame >= 1 and a positive size needed")
        grouped.setdefault(frame, []).append(
            (str(int(row[1])), tuple(float(value) for value in row[2:6]), f"boxes row {row_number}")
        )
    tracks: dict[str, Tracklet] = {}
    for number, frame_image in enumerate(frames, start=1):
        if number in grouped:
            image = np.asarray(frame_image)
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise TrackInputError(f"frames[{number - 1}]: expected a uint8 HxWx3 RGB array")
            cut_crops(image, number, grouped[number], tracks, camera, report)
    return _finish(tracks, grouped, len(frames), report, "the frames"), report
