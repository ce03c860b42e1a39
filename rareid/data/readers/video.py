"""Video re-ID datasets: tracklets (ordered frame files) with identity and camera.

==============  ============================================================================
name            layout under ``root`` (or ``root`` itself)
==============  ============================================================================
mars            ``MARS/``: ``bbox_train/ bbox_test/<pid>/<pid>C<cam>T<track>F<frame>.jpg``
                and ``info/`` with ``train_name.txt``, ``test_name.txt``,
                ``tracks_train_info.mat``, ``tracks_test_info.mat`` (rows: first and last
                line of the name list, pid, camera; 1-based) and ``query_IDX.mat``
                (1-based rows of the test tracks that are queries; the gallery is every test
                track, as published). pid ``-1`` (junk) is dropped and counted.
dukevideo       ``DukeMTMC-VideoReID/``: ``train/ query/ gallery/<pid>/<track>/
                <pid>_C<cam>_T<track>_F<frame>.jpg``
ilidsvid        ``i-LIDS-VID/sequences/cam1|cam2/person<NNN>/*.png``; a seeded half of the
                people train, the other half test (query cam1, gallery cam2)
prid2011        ``prid_2011/multi_shot/cam_a|cam_b/person_<NNNN>/*.png``; the people seen by
                both cameras, split in halves by seed (query cam_a, gallery cam_b)
==============  ============================================================================

The published iLIDS-VID and PRID2011 protocols average 10 half splits of the people. The
releases' split files are read when present (iLIDS-VID's ``train-test people
splits/train_test_splits_ilidsvid.mat``, PRID2011's ``splits_prid2011.json``) and
``split_index`` picks one (0..9); without them a seeded random half split is drawn
(``split_seed``) and the summary says so. A missing folder raises
:class:`DatasetNotFoundError`, a file that does not follow the layout
:class:`DatasetFormatError`, each naming the path.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rareid.data.readers.base import DatasetFormatError, DatasetNotFoundError

__all__ = ["VIDEO_DATASETS", "VideoSplits", "VideoTrack", "read_video_dataset"]

_FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass(frozen=True)
class VideoTrack:
    """One tracklet: its frame files in order, identity and 0-based camera."""

    paths: tuple[str, ...]
    pid: int
    camid: int


@dataclass
class VideoSplits:
    """Training, query and gallery tracklets of a video dataset (original identities)."""

    name: str
    train: list[VideoTrack]
    query: list[VideoTrack]
    gallery: list[VideoTrack]
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{self.name}:", f"  {'split':<8}{'ids':>7}{'tracks':>8}{'frames':>9}"]
        for split, tracks in (
            ("train", self.train),
            ("query", self.query),
            ("gallery", self.gallery),
        ):
            frames = sum(len(track.paths) for track in tracks)
            lines.append(
                f"  {split:<8}{len({track.pid for track in tracks}):>7}{len(tracks):>8}{frames:>9}"
            )
        return "\n".join(lines + self.notes)


def _dataset_dir(root: Path, names: tuple[str, ...], marker: str, display: str) -> Path:
    for candidate in (*(root / name for name in names), root):
        if (candidate / marker).exists():
            return candidate
    raise DatasetNotFoundError(
        f"{display}: no {marker!r} under {root} or {', '.join(str(root / name) for name in names)}"
    )


def _frames(folder: Path) -> tuple[str, ...]:
    return tuple(
        str(path)
        for path in sorted(folder.iterdir())
        if path.suffix.lower() in _FRAME_SUFFIXES and not path.name.startswith(".")
    )


# ---------------------------------------------------------------------------------- MARS
_MARS_NAME = re.compile(r"(?P<pid>-?\d{4}|00-1)C(?P<cam>\d)T(?P<track>\d{4})F(?P<frame>\d{3})")


def _mat(path: Path, key: str) -> np.ndarray:
    from scipy.io import loadmat

    if not path.is_file():
        raise DatasetNotFoundError(f"MARS: missing {path} (the info/ folder of the release)")
    content = loadmat(str(path))
    if key not in content:
        raise DatasetFormatError(f"MARS: {path} holds no {key!r} array")
    return np.asarray(content[key])


def read_mars(root: Path) -> VideoSplits:
    """MARS in its published layout (``info/`` lists and ``.mat`` track tables)."""
    base = _dataset_dir(root, ("MARS", "mars"), "info", "MARS")
    info = base / "info"
    notes: list[str] = []

    def tracks(names_file: str, table: np.ndarray, folder: str) -> list[VideoTrack | None]:
        """One entry per table row; ``None`` for a junk track (pid -1), counted in the notes."""
        names_path = info / names_file
        if not names_path.is_file():
            raise DatasetNotFoundError(f"MARS: missing {names_path}")
        names = [line.strip() for line in names_path.read_text().splitlines() if line.strip()]
        result: list[VideoTrack | None] = []
        for row_number, row in enumerate(table.astype(np.int64), start=1):
            start, end, pid, camera = (int(value) for value in row[:4])
            if not 1 <= start <= end <= len(names):
                raise DatasetFormatError(
                    f"MARS: row {row_number} of the {folder} track table points outside "
                    f"{names_path} (lines {start}..{end} of {len(names)})"
                )
            files = names[start - 1 : end]
            if not _MARS_NAME.match(files[0]):
                raise DatasetFormatError(
                    f"MARS: {files[0]!r} in {names_path} is not <pid>C<cam>T<track>F<frame>.jpg"
                )
            paths = tuple(str(base / folder / name[:4] / name) for name in files)
            result.append(None if pid == -1 else VideoTrack(paths, pid, camera - 1))
        if junk := sum(track is None for track in result):
            notes.append(f"  {folder}: {junk} junk tracks (pid -1) dropped")
        return result

    train = tracks(
        "train_name.txt", _mat(info / "tracks_train_info.mat", "track_train_info"), "bbox_train"
    )
    test = tracks(
        "test_name.txt", _mat(info / "tracks_test_info.mat", "track_test_info"), "bbox_test"
    )
    query_rows = _mat(info / "query_IDX.mat", "query_IDX").reshape(-1).astype(np.int64)
    if query_rows.size and not (query_rows.min() >= 1 and query_rows.max() <= len(test)):
        raise DatasetFormatError(f"MARS: query_IDX.mat points outside the {len(test)} test tracks")
    query = [track for row in query_rows.tolist() if (track := test[row - 1]) is not None]
    gallery = [track for track in test if track is not None]
    notes.append(f"  {len(query)} query tracks; the gallery is every test track")
    return VideoSplits(
        "mars", [track for track in train if track is not None], query, gallery, notes
    )


# ------------------------------------------------------------------------ DukeMTMC-VideoReID
_DUKE_NAME = re.compile(r"(?P<pid>\d+)_C(?P<cam>\d+)_T(?P<track>\d+)_F(?P<frame>\d+)")


def read_dukevideo(root: Path) -> VideoSplits:
    """DukeMTMC-VideoReID: ``<split>/<pid>/<track>/`` folders of frames."""
    base = _dataset_dir(
        root, ("DukeMTMC-VideoReID", "dukemtmc-videoreid"), "query", "DukeMTMC-VideoReID"
    )

    def split(name: str) -> list[VideoTrack]:
        folder = base / name
        if not folder.is_dir():
            raise DatasetNotFoundError(f"DukeMTMC-VideoReID: missing folder {folder}")
        result = []
        for person in sorted(path for path in folder.iterdir() if path.is_dir()):
            for track in sorted(path for path in person.iterdir() if path.is_dir()):
                paths = _frames(track)
                if not paths:
                    raise DatasetFormatError(
                        f"DukeMTMC-VideoReID: track folder {track} holds no frame"
                    )
                found = _DUKE_NAME.match(Path(paths[0]).name)
                if not found:
                    raise DatasetFormatError(
                        f"DukeMTMC-VideoReID: {paths[0]} is not <pid>_C<cam>_T<track>_F<frame>.jpg"
                    )
                result.append(VideoTrack(paths, int(person.name), int(found["cam"]) - 1))
        return result

    return VideoSplits("dukevideo", split("train"), split("query"), split("gallery"))


# ---------------------------------------------------------------------- two-camera datasets
#: Where the releases' split files are looked for, relative to ``root`` and to the folder that
#: holds the dataset (iLIDS-VID's ``ls_set``: 10 rows of 1-based indices into the sorted
#: ``cam1`` people, the first half tested; PRID2011's JSON: a list of ``{"train": [...],
#: "test": [...]}`` person folder names, the deep-person-reid convention).
_SPLIT_FILES = {
    "iLIDS-VID": Path("train-test people splits") / "train_test_splits_ilidsvid.mat",
    "PRID2011": Path("splits_prid2011.json"),
}


def _split_file(root: Path, base: Path, display: str) -> Path | None:
    name = _SPLIT_FILES[display]
    for folder in dict.fromkeys((root, base, base.parent)):
        if (folder / name).is_file():
            return folder / name
    return None


def _published_splits(path: Path, cam1_people: list[str]) -> list[tuple[list[str], list[str]]]:
    """``[(train people, test people)]`` of a release's split file, as person folder names."""
    if path.suffix == ".json":
        try:
            document = json.loads(path.read_text())
            return [(list(split["train"]), list(split["test"])) for split in document]
        except (ValueError, TypeError, KeyError) as error:
            raise DatasetFormatError(
                f"{path}: expected a JSON list of {{'train': [...], 'test': [...]}} person "
                f"folder names ({error})"
            ) from None
    from scipy.io import loadmat

    table = np.asarray(loadmat(str(path)).get("ls_set", np.empty((0, 0))))
    if table.ndim != 2 or table.size == 0:
        raise DatasetFormatError(f"{path}: holds no 2-D 'ls_set' array of person indices")
    if table.min() < 1 or table.max() > len(cam1_people):
        raise DatasetFormatError(
            f"{path}: person indices must be 1..{len(cam1_people)} (the cam1 people), "
            f"got {int(table.min())}..{int(table.max())}"
        )
    half = table.shape[1] // 2
    return [
        (
            sorted(cam1_people[int(index) - 1] for index in row[half:]),
            sorted(cam1_people[int(index) - 1] for index in row[:half]),
        )
        for row in table
    ]


def _choose_people(
    root: Path, base: Path, display: str, people: list[dict[str, tuple[str, ...]]], options: dict
) -> tuple[list[str], list[str], list[str]]:
    """Train people, test people and the notes saying where the split came from."""
    both = sorted(set(people[0]) & set(people[1]))
    path = _split_file(root, base, display)
    if path is None:
        seed = options["split_seed"]
        order = np.random.default_rng(seed).permutation(len(both))
        chosen = {both[position] for position in order[: len(both) // 2].tolist()}
        note = f"no {_SPLIT_FILES[display]} found: seeded random half split (split seed {seed})"
        train = [name for name in both if name in chosen]
        return train, [name for name in both if name not in chosen], [f"  {note}"]
    splits = _published_splits(path, sorted(people[0]))
    index = options["split_index"]
    if not 0 <= index < len(splits):
        raise DatasetFormatError(
            f"split_index: {path} holds splits 0..{len(splits) - 1}, got {index}"
        )
    train, test = splits[index]
    unseen = sorted(set(train + test) - set(both))
    if unseen:
        raise DatasetFormatError(
            f"{path}: split {index} names {len(unseen)} people not seen by both cameras "
            f"under {base} (e.g. {unseen[0]})"
        )
    unused = len(both) - len(set(train + test))
    note = f"  split {index} of {len(splits)} from {path}"
    return train, test, [note + (f"; {unused} people in neither half" if unused else "")]


def _two_cameras(
    root: Path,
    names: tuple[str, ...],
    marker: str,
    cameras: tuple[str, str],
    display: str,
    options: dict,
) -> VideoSplits:
    dataset = _dataset_dir(root, names, marker, display)
    base = dataset / marker
    people: list[dict[str, tuple[str, ...]]] = [{}, {}]
    for side, camera in enumerate(cameras):
        folder = base / camera
        if not folder.is_dir():
            raise DatasetNotFoundError(f"{display}: missing folder {folder}")
        for person in sorted(path for path in folder.iterdir() if path.is_dir()):
            paths = _frames(person)
            if not paths:
                raise DatasetFormatError(f"{display}: sequence folder {person} holds no frame")
            people[side][person.name] = paths
    both = sorted(set(people[0]) & set(people[1]))
    if len(both) < 2:
        raise DatasetFormatError(
            f"{display}: fewer than 2 people are seen by both cameras under {base}"
        )
    train_people, test_people, notes = _choose_people(root, dataset, display, people, options)
    pid = {name: number for number, name in enumerate(both, start=1)}

    def tracks(chosen: list[str], side: int) -> list[VideoTrack]:
        return [VideoTrack(people[side][name], pid[name], side) for name in chosen]

    notes.append(f"  {len(train_people)} train / {len(test_people)} test people")
    return VideoSplits(
        display.lower(),
        tracks(train_people, 0) + tracks(train_people, 1),
        tracks(test_people, 0),
        tracks(test_people, 1),
        notes,
    )


def read_ilidsvid(root: Path, split_seed: int = 0, split_index: int = 0) -> VideoSplits:
    """iLIDS-VID: two cameras, one sequence per person and camera; the release's people
    splits when present (``split_index`` picks one), else a half split by ``split_seed``."""
    options = {"split_seed": split_seed, "split_index": split_index}
    return _two_cameras(
        root, ("i-LIDS-VID", "ilids-vid"), "sequences", ("cam1", "cam2"), "iLIDS-VID", options
    )


def read_prid2011(root: Path, split_seed: int = 0, split_index: int = 0) -> VideoSplits:
    """PRID2011 (multi-shot): the people both cameras saw; ``splits_prid2011.json`` when
    present (``split_index`` picks one), else a half split by ``split_seed``."""
    options = {"split_seed": split_seed, "split_index": split_index}
    return _two_cameras(
        root, ("prid_2011", "prid2011"), "multi_shot", ("cam_a", "cam_b"), "PRID2011", options
    )


VIDEO_DATASETS: dict[str, Callable[..., VideoSplits]] = {
    "mars": read_mars,
    "dukevideo": read_dukevideo,
    "ilidsvid": read_ilidsvid,
    "prid2011": read_prid2011,
}


def read_video_dataset(name: str, root: str | os.PathLike, **options: int) -> VideoSplits:
    """The splits of video dataset ``name`` (one of :data:`VIDEO_DATASETS`) under ``root``."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in VIDEO_DATASETS:
        raise ValueError(f"video dataset: expected one of {list(VIDEO_DATASETS)}, got {name!r}")
    path = Path(root)
    if not path.is_dir():
        raise DatasetNotFoundError(f"{name}: root {path} is not a folder")
    return VIDEO_DATASETS[key](path, **options)
