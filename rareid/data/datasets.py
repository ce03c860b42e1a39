"""Readers for the re-ID datasets in the exact on-disk layouts the community uses.

Every reader turns a dataset folder into a :class:`ReIDDataset`: three lists of
:class:`ImageRecord` (absolute path, identity, 0-based camera). Conventions shared by
all readers, so that the rest of the package never needs to know which dataset it has:

* training identities are relabelled ``0..C-1`` in sorted order of the original id
  (the classifier needs dense labels); query/gallery keep the original ids, so ranked
  lists can be traced back to files;
* records are sorted by path, so the same folder always gives the same lists;
* pid ``-1`` (Market-1501 "junk") is the only thing ever dropped, and it is counted in
  the logged summary; pid ``0`` (distractor) is allowed in the gallery only;
* malformed input (missing folder, a file name that does not parse, an empty split)
  raises :class:`DatasetNotFoundError` / :class:`DatasetFormatError` naming the path and
  what to do, never a silent skip;
* only image files directly inside a split folder are read: non-image files
  (``Thumbs.db``, ``readme.txt``), hidden files (``.DS_Store``, macOS ``._*.jpg``) are not
  data and are ignored; sub-folders are ignored with a warning.

Supported layouts (``build_dataset(name, root)``):

==============  ============================================================================
name            layout under ``root``
==============  ============================================================================
market1501      ``Market-1501-v15.09.15/`` or ``market1501/`` (or ``root`` itself) with
                ``bounding_box_train/ query/ bounding_box_test/``;
                ``<pid>_c<cam>s<seq>_<frame>_<box>.jpg``
dukemtmc        ``DukeMTMC-reID/`` (or ``root`` itself), same folders; ``<pid>_c<cam>_f<frame>.jpg``
cuhk03          ``cuhk03/cuhk03_release/cuhk-03.mat`` (MATLAB v7.3), extracted once to
                ``cuhk03/images_{detected|labeled}/<campair>_<pid:03d>_<view>_<img:02d>.png``
caviar          ``CAVIARa/<pid:04d><idx:03d>.jpg``; idx 1-10 near (HR) camera, 11-20 far (LR)
folder          ``train/ query/ gallery/`` with Market-style names ``<pid>_c<cam>[...]``
synthetic       Market-1501 layout in ``synthetic/`` or in ``root`` itself
==============  ============================================================================
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DATASET_NAMES",
    "BadImageError",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "ImageRecord",
    "ReIDDataset",
    "build_dataset",
    "extract_cuhk03",
    "resolve_dataset_name",
]

logger = logging.getLogger(__name__)

#: File extensions treated as images. Anything else (Thumbs.db, readme.txt, ...) is ignored.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})

#: Canonical dataset names accepted by :func:`build_dataset`.
DATASET_NAMES: tuple[str, ...] = (
    "market1501",
    "dukemtmc",
    "cuhk03",
    "caviar",
    "folder",
    "synthetic",
)

# Aliases are matched after lower-casing and removing "-", "_", "." and spaces.
_ALIASES: dict[str, str] = {
    "market1501": "market1501",
    "market": "market1501",
    "market1501v150915": "market1501",
    "dukemtmc": "dukemtmc",
    "duke": "dukemtmc",
    "dukemtmcreid": "dukemtmc",
    "cuhk03": "cuhk03",
    "cuhk": "cuhk03",
    "caviar": "caviar",
    "caviar4reid": "caviar",
    "caviara": "caviar",
    "folder": "folder",
    "generic": "folder",
    "custom": "folder",
    "synthetic": "synthetic",
    "synth": "synthetic",
}

#: Options accepted by :func:`build_dataset` with their defaults. Every dataset accepts every
#: option (ones that do not apply are ignored), so one config block can be reused.
DEFAULT_OPTIONS: dict[str, Any] = {
    "split_seed": 0,
    "cuhk03_labeled": False,
    "cuhk03_num_test": 100,
    "caviar_num_test": 25,
    "verify_images": False,
    "skip_bad_images": False,
}

_CUHK03_MARKER = ".rareid_extracted.json"


class DatasetNotFoundError(FileNotFoundError):
    """A dataset root, folder or file is missing."""


class DatasetFormatError(ValueError):
    """A dataset is present but its content does not follow the expected layout."""


class BadImageError(DatasetFormatError):
    """One or more image files cannot be decoded (``verify_images=True``)."""


@dataclass(frozen=True)
class ImageRecord:
    """One image: absolute ``path``, identity ``pid`` and 0-based camera ``camid``.

    ``pid`` is relabelled ``0..C-1`` in the training split and the original id in
    query/gallery (``0`` marks a gallery distractor).
    """

    path: str
    pid: int
    camid: int


@dataclass
class ReIDDataset:
    """The three splits of a re-ID dataset, ready for a DataModule."""

    name: str
    train: list[ImageRecord]
    query: list[ImageRecord]
    gallery: list[ImageRecord]
    num_classes: int
    #: True where queries are real low-resolution images (CAVIAR): their level is estimated
    #: from their size instead of being synthesised.
    query_is_lowres: bool = False
    #: Original identity of each training label (``train_ids[label]``); empty when the
    #: labels are the identities themselves (a hand-built dataset).
    train_ids: tuple[int, ...] = ()
    #: Real low-resolution images of training identities (CAVIAR's far camera), labelled
    #: like ``train``. Never trained on: they are the validation queries of held-out ids.
    train_lowres: list[ImageRecord] = field(default_factory=list)

    def summary(self) -> str:
        """A small table of identities / images / cameras per split (for logs)."""
        lines = [f"{self.name}:", f"  {'split':<8}{'ids':>7}{'images':>9}{'cameras':>9}"]
        for split, records in (
            ("train", self.train),
            ("query", self.query),
            ("gallery", self.gallery),
        ):
            ids = len({r.pid for r in records})
            cams = len({r.camid for r in records})
            lines.append(f"  {split:<8}{ids:>7}{len(records):>9}{cams:>9}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------


def resolve_dataset_name(name: str) -> str:
    """Canonical dataset name for ``name`` (case-insensitive, aliases allowed)."""
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a string, got {type(name).__name__}")
    key = re.sub(r"[\s_.\-]", "", name.strip().lower())
    if key not in _ALIASES:
        aliases = ", ".join(sorted(_ALIASES))
        raise ValueError(
            f"unknown dataset {name!r}: valid names are {', '.join(DATASET_NAMES)} "
            f"(aliases, case-insensitive, '-'/'_' ignored: {aliases})"
        )
    return _ALIASES[key]


def build_dataset(name: str, root: str | os.PathLike[str], **options: Any) -> ReIDDataset:
    """Read dataset ``name`` from ``root``.

    Args:
        name: one of :data:`DATASET_NAMES` (case-insensitive; aliases such as ``"market"``,
            ``"market-1501"``, ``"duke"``, ``"dukemtmc-reid"``, ``"cuhk"``, ``"caviar4reid"``).
        root: folder that contains the dataset's own folder (e.g. the one holding
            ``Market-1501-v15.09.15/``), or that folder itself.
        split_seed: seed of the random train/test identity split (CUHK03, CAVIAR); default 0.
        cuhk03_labeled: use CUHK03's hand-labelled boxes instead of the detected ones.
        cuhk03_num_test: number of CUHK03 test identities (default 100, the MLR split).
        caviar_num_test: number of CAVIAR test identities (default 25).
        verify_images: decode every image once with OpenCV and raise naming the bad files.
        skip_bad_images: skip (and log the count of) undecodable images instead of raising;
            implies ``verify_images``.

    Raises:
        ValueError: unknown ``name``, bad option value, malformed dataset content.
        TypeError: unknown option name or option of the wrong type.
        FileNotFoundError: missing root, folder or file.
    """
    canonical = resolve_dataset_name(name)
    opts = _check_options(options)
    root_path = Path(os.path.abspath(os.path.expanduser(os.fspath(root))))
    reader = _READERS[canonical]
    raw = reader(root_path, opts)
    return _finalize(raw, opts)


def _check_options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise TypeError(
            f"build_dataset() got unknown option(s) {', '.join(map(repr, unknown))}; "
            f"valid options are {', '.join(DEFAULT_OPTIONS)}"
        )
    opts = {**DEFAULT_OPTIONS, **options}
    for key in ("cuhk03_labeled", "verify_images", "skip_bad_images"):
        if not isinstance(opts[key], (bool, np.bool_)):
            raise TypeError(f"option {key} must be a bool, got {opts[key]!r}")
        opts[key] = bool(opts[key])
    for key, minimum in (("split_seed", 0), ("cuhk03_num_test", 1), ("caviar_num_test", 1)):
        value = opts[key]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"option {key} must be an int, got {value!r}")
        if value < minimum:
            raise ValueError(f"option {key} must be >= {minimum}, got {value}")
        opts[key] = int(value)
    if opts["skip_bad_images"]:
        opts["verify_images"] = True
    return opts


# --------------------------------------------------------------------------------------
# Shared machinery
# --------------------------------------------------------------------------------------


@dataclass
class _RawSplits:
    """What a reader found, before verification, relabelling and sorting."""

    name: str
    source: Path
    train: list[ImageRecord]
    query: list[ImageRecord]
    gallery: list[ImageRecord]
    query_is_lowres: bool = False
    notes: list[str] = field(default_factory=list)
    train_lowres: list[ImageRecord] = field(default_factory=list)


def _finalize(raw: _RawSplits, opts: dict[str, Any]) -> ReIDDataset:
    splits = {"train": raw.train, "query": raw.query, "gallery": raw.gallery}
    if opts["verify_images"]:
        splits = _verify_splits(raw.name, splits, skip=opts["skip_bad_images"], notes=raw.notes)
    for split, records in splits.items():
        if not records:
            raise DatasetFormatError(f"{raw.name} at {raw.source}: the {split} split is empty")
    train_pids = sorted({r.pid for r in splits["train"]})
    relabel = {pid: label for label, pid in enumerate(train_pids)}
    train = sorted(
        (ImageRecord(r.path, relabel[r.pid], r.camid) for r in splits["train"]),
        key=lambda r: r.path,
    )
    dataset = ReIDDataset(
        name=raw.name,
        train=train,
        query=sorted(splits["query"], key=lambda r: r.path),
        gallery=sorted(splits["gallery"], key=lambda r: r.path),
        num_classes=len(train_pids),
        query_is_lowres=raw.query_is_lowres,
        train_ids=tuple(train_pids),
        train_lowres=sorted(
            (ImageRecord(r.path, relabel[r.pid], r.camid) for r in raw.train_lowres),
            key=lambda r: r.path,
        ),
    )
    text = dataset.summary().replace(f"{raw.name}:", f"{raw.name} at {raw.source}:", 1)
    if raw.notes:
        text += "\n" + "\n".join(f"  note: {n}" for n in raw.notes)
    logger.info("%s", text)
    return dataset


def _list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``; hidden and non-image files are ignored."""
    images: list[Path] = []
    subdirs = 0
    with os.scandir(folder) as it:
        for entry in it:
            if entry.name.startswith("."):  # .DS_Store, macOS "._x.jpg" resource forks
                continue
            if entry.is_dir():
                subdirs += 1
                continue
            if os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
                images.append(Path(entry.path))
    if subdirs:
        logger.warning(
            "%s: ignored %d sub-folder(s); images are read from this folder only", folder, subdirs
        )
    return sorted(images)


def _require_dir(path: Path, what: str, hint: str) -> None:
    if not path.is_dir():
        raise DatasetNotFoundError(f"{what}: missing folder {path} ({hint})")


def _require_root(root: Path, display: str, hint: str) -> None:
    if not root.exists():
        raise DatasetNotFoundError(f"{display} root {root} does not exist ({hint})")
    if not root.is_dir():
        raise DatasetNotFoundError(f"{display} root {root} is not a folder ({hint})")


def _draw_test_ids(ids: Sequence[Any], num_test: int, seed: int) -> set[Any]:
    """``num_test`` identities drawn from sorted ``ids`` with a seeded numpy Generator."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(ids), size=num_test, replace=False)
    return {ids[int(i)] for i in chosen}


# --------------------------------------------------------------------------------------
# Market-1501-style layouts (Market-1501, DukeMTMC-reID, generic folder, synthetic)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _FolderLayout:
    display: str
    subdirs: tuple[str, ...]  # candidate dataset folders under root; root itself is tried last
    train: str
    query: str
    gallery: str
    pattern: re.Pattern[str]  # matched against the file stem; groups "pid" and "cam"
    example: str
    pattern_text: str
    download_hint: str


_MARKET_RE = re.compile(r"(?P<pid>-?\d+)_c(?P<cam>\d+)s(?P<seq>\d+)_(?P<frame>\d+)_(?P<box>\d+)")
_DUKE_RE = re.compile(r"(?P<pid>-?\d+)_c(?P<cam>\d+)_f(?P<frame>\d+)")
_FOLDER_RE = re.compile(r"(?P<pid>-?\d+)_c(?P<cam>\d+)(?:[s_].*)?")

_LAYOUTS: dict[str, _FolderLayout] = {
    "market1501": _FolderLayout(
        display="Market-1501",
        subdirs=("Market-1501-v15.09.15", "market1501", "Market-1501"),
        train="bounding_box_train",
        query="query",
        gallery="bounding_box_test",
        pattern=_MARKET_RE,
        example="0002_c1s1_000451_03.jpg",
        pattern_text="<pid>_c<cam>s<seq>_<frame>_<box>.jpg",
        download_hint="download Market-1501-v15.09.15.zip and extract it there",
    ),
    "dukemtmc": _FolderLayout(
        display="DukeMTMC-reID",
        subdirs=("DukeMTMC-reID", "dukemtmc-reid", "dukemtmc"),
        train="bounding_box_train",
        query="query",
        gallery="bounding_box_test",
        pattern=_DUKE_RE,
        example="0005_c2_f0046985.jpg",
        pattern_text="<pid>_c<cam>_f<frame>.jpg",
        download_hint="download DukeMTMC-reID.zip and extract it there",
    ),
    "folder": _FolderLayout(
        display="folder dataset",
        subdirs=(),
        train="train",
        query="query",
        gallery="gallery",
        pattern=_FOLDER_RE,
        example="0002_c1s1_000451_03.jpg",
        pattern_text="<pid>_c<cam>[s<seq>_<frame>_<box> or _<anything>].<ext>",
        download_hint="put your images in train/, query/ and gallery/ with Market-1501 names",
    ),
    "synthetic": _FolderLayout(
        display="synthetic",
        subdirs=("synthetic",),
        train="bounding_box_train",
        query="query",
        gallery="bounding_box_test",
        pattern=_MARKET_RE,
        example="0002_c1s1_000451_03.jpg",
        pattern_text="<pid>_c<cam>s<seq>_<frame>_<box>.jpg",
        download_hint="write it with `rareid synth --out <root>`",
    ),
}


def _find_layout_base(root: Path, layout: _FolderLayout) -> Path:
    """The folder that holds the three split folders: a named sub-folder, or root itself."""
    hint = f"{layout.download_hint}, or pass the folder that contains {layout.train}/"
    _require_root(root, layout.display, hint)
    candidates = [root / sub for sub in layout.subdirs] + [root]
    for candidate in candidates:
        if (candidate / layout.train).is_dir():
            return candidate
    # Nothing has the train folder: name the most likely place it should be.
    existing = [c for c in candidates[:-1] if c.is_dir()]
    expected = (existing[0] if existing else candidates[0]) / layout.train
    raise DatasetNotFoundError(
        f"{layout.display} not found under {root}: expected {expected} ({hint})"
    )


def _parse_folder(
    folder: Path,
    layout: _FolderLayout,
    split: str,
    *,
    allow_distractors: bool,
) -> tuple[list[ImageRecord], int]:
    """Records of one split folder and the number of junk (pid -1) images dropped."""
    records: list[ImageRecord] = []
    junk = 0
    for path in _list_images(folder):
        match = layout.pattern.fullmatch(path.stem)
        if match is None:
            raise DatasetFormatError(
                f"{layout.display}: cannot parse file name {path}: expected "
                f"{layout.pattern_text} (e.g. {layout.example}); rename or remove the file"
            )
        pid, cam = int(match["pid"]), int(match["cam"])
        if pid == -1:
            junk += 1
            continue
        if pid < -1:
            raise DatasetFormatError(f"{layout.display}: negative identity {pid} in file {path}")
        if cam < 1:
            raise DatasetFormatError(
                f"{layout.display}: camera numbers in file names start at 1 (c1), got c{cam} in {path}"
            )
        if pid == 0 and not allow_distractors:
            raise DatasetFormatError(
                f"{layout.display}: identity 0 marks gallery distractors and cannot appear in the "
                f"{split} split, found {path}; renumber that identity from 1"
            )
        records.append(ImageRecord(str(path), pid, cam - 1))
    if not records:
        raise DatasetFormatError(
            f"{layout.display}: no usable images in {folder} (the {split} split is empty; "
            f"expected files like {layout.example})"
        )
    return records, junk


def _read_folder_layout(canonical: str) -> Callable[[Path, dict[str, Any]], _RawSplits]:
    layout = _LAYOUTS[canonical]

    def read(root: Path, opts: dict[str, Any]) -> _RawSplits:
        base = _find_layout_base(root, layout)
        hint = "the dataset looks incomplete; extract it again"
        for sub in (layout.query, layout.gallery):
            _require_dir(base / sub, f"{layout.display} at {base}", hint)
        splits: dict[str, list[ImageRecord]] = {}
        notes: list[str] = []
        for split, sub in (
            ("train", layout.train),
            ("query", layout.query),
            ("gallery", layout.gallery),
        ):
            records, junk = _parse_folder(
                base / sub, layout, split, allow_distractors=split == "gallery"
            )
            splits[split] = records
            if junk:
                notes.append(f"dropped {junk} junk image(s) (pid -1) from {sub}/")
        return _RawSplits(
            name=canonical,
            source=base,
            train=splits["train"],
            query=splits["query"],
            gallery=splits["gallery"],
            notes=notes,
        )

    return read


# --------------------------------------------------------------------------------------
# CUHK03 (cuhk-03.mat, MATLAB v7.3 / HDF5)
# --------------------------------------------------------------------------------------

_CUHK03_RE = re.compile(r"(?P<campair>\d+)_(?P<pid>\d+)_(?P<view>[12])_(?P<img>\d+)")
_CUHK03_HINT = (
    "download cuhk03_release.zip and extract it so that the file is "
    "<root>/cuhk03/cuhk03_release/cuhk-03.mat"
)


def _is_empty_cell(shape: tuple[int, ...]) -> bool:
    """MATLAB stores an empty cell entry ``[]`` as a tiny array (its dims), never as an image."""
    size = int(np.prod(shape)) if shape else 1
    return size == 0 or len(shape) < 3 or size == 2


def extract_cuhk03(
    mat_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], kind: str
) -> int:
    """Write every ``kind`` ("detected"/"labeled") image of ``cuhk-03.mat`` as a PNG.

    Files are named ``<campair>_<pid:03d>_<view>_<img:02d>.png`` (all 1-based; images 1-5
    are view 1, 6-10 view 2). Empty cells (fewer than 10 images of a person) are skipped:
    those images do not exist. A marker file is written last, so an interrupted
    extraction is redone on the next call. Returns the number of images written.
    """
    import cv2
    import h5py
    from tqdm.auto import tqdm

    if kind not in ("detected", "labeled"):
        raise ValueError(f"kind must be 'detected' or 'labeled', got {kind!r}")
    mat_path, out_dir = Path(mat_path), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / _CUHK03_MARKER).unlink(missing_ok=True)
    written = skipped = identities = 0
    try:
        mat = h5py.File(mat_path, "r")
    except OSError as err:
        raise DatasetFormatError(
            f"CUHK03: cannot open {mat_path} as a MATLAB v7.3 (HDF5) file: {err}; "
            f"the download may be incomplete"
        ) from err
    with mat:
        if kind not in mat:
            raise DatasetFormatError(
                f"CUHK03: {mat_path} has no '{kind}' entry (found {sorted(mat)})"
            )
        pair_refs = np.asarray(mat[kind][()]).reshape(-1)
        cells = [mat[ref] for ref in pair_refs]
        total = sum(int(cell.shape[1]) for cell in cells)
        with tqdm(total=total, desc=f"Extracting CUHK03 {kind}", unit="id") as bar:
            for campair, cell in enumerate(cells, start=1):
                if cell.ndim != 2 or cell.shape[0] != 10:
                    raise DatasetFormatError(
                        f"CUHK03: {mat_path} '{kind}' camera pair {campair}: expected a "
                        f"(10, n_ids) cell array of references, got shape {cell.shape}"
                    )
                refs = cell[()]
                for pid in range(1, cell.shape[1] + 1):
                    identities += 1
                    for img in range(1, 11):
                        dataset = mat[refs[img - 1, pid - 1]]
                        if _is_empty_cell(tuple(dataset.shape)):
                            skipped += 1
                            continue
                        # Stored transposed (MATLAB is column-major): (3, W, H) -> (H, W, 3) RGB.
                        rgb = np.ascontiguousarray(np.asarray(dataset[()]).transpose(2, 1, 0))
                        if rgb.shape[2] != 3:
                            raise DatasetFormatError(
                                f"CUHK03: {mat_path} '{kind}' camera pair {campair}, identity "
                                f"{pid}, image {img}: expected 3 colour channels, got shape "
                                f"{tuple(dataset.shape)}"
                            )
                        view = 1 if img <= 5 else 2
                        name = f"{campair}_{pid:03d}_{view}_{img:02d}.png"
                        ok, buf = cv2.imencode(".png", rgb[:, :, ::-1].astype(np.uint8))
                        if not ok:
                            raise DatasetFormatError(f"CUHK03: cannot encode {name} as PNG")
                        _atomic_write(out_dir / name, buf.tobytes())
                        written += 1
                    bar.update(1)
    marker = {
        "kind": kind,
        "images": written,
        "identities": identities,
        "empty_cells_skipped": skipped,
        "source": str(mat_path),
    }
    _atomic_write(out_dir / _CUHK03_MARKER, json.dumps(marker, indent=2).encode())
    logger.info(
        "CUHK03: extracted %d %s images of %d identities to %s (%d empty cells skipped)",
        written,
        kind,
        identities,
        out_dir,
        skipped,
    )
    return written


def _atomic_write(path: Path, data: bytes) -> None:
    """Write then rename, so readers (other processes) never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _cuhk03_complete(images_dir: Path) -> bool:
    marker = images_dir / _CUHK03_MARKER
    if not marker.is_file():
        return False
    try:
        expected = int(json.loads(marker.read_text())["images"])
    except (ValueError, KeyError, TypeError):
        return False
    return len(_list_images(images_dir)) == expected


def _read_cuhk03(root: Path, opts: dict[str, Any]) -> _RawSplits:
    """CUHK03 with the MLR split: ``cuhk03_num_test`` test identities drawn by ``split_seed``.

    An identity is (camera pair, person index); its id is ``campair * 1000 + pid`` (e.g.
    ``3042``). Views 1 and 2 of camera pair ``c`` are cameras ``2(c-1)`` and ``2(c-1)+1``.
    Train = every image of the training identities. MLR-CUHK03: per test identity the
    queries are the images of one view (drawn by ``split_seed``), the gallery the other
    view's images; the evaluation degrades the queries and draws a single-shot gallery.
    """
    kind = "labeled" if opts["cuhk03_labeled"] else "detected"
    display = f"CUHK03 ({kind})"
    _require_root(root, "CUHK03", _CUHK03_HINT)
    base = root / "cuhk03"
    if not base.is_dir() and any(
        (root / sub).exists() for sub in ("cuhk03_release", "images_detected", "images_labeled")
    ):
        base = root
    mat_path = base / "cuhk03_release" / "cuhk-03.mat"
    images_dir = base / f"images_{kind}"
    notes: list[str] = []
    if not _cuhk03_complete(images_dir):
        if mat_path.is_file():
            extract_cuhk03(mat_path, images_dir, kind)
        elif images_dir.is_dir() and _list_images(images_dir):
            if (images_dir / _CUHK03_MARKER).is_file():
                raise DatasetFormatError(
                    f"{display}: {images_dir} has fewer images than its marker "
                    f"{_CUHK03_MARKER} records and {mat_path} is absent to extract them again; "
                    f"restore the .mat file or the missing images"
                )
            notes.append(
                f"read pre-extracted images from {images_dir} (no {mat_path.name} to check)"
            )
        else:
            raise DatasetNotFoundError(
                f"CUHK03 not found under {root}: expected {mat_path} or an extracted "
                f"{images_dir}/ folder ({_CUHK03_HINT})"
            )

    by_identity: dict[int, list[ImageRecord]] = {}
    for path in _list_images(images_dir):
        match = _CUHK03_RE.fullmatch(path.stem)
        if match is None:
            raise DatasetFormatError(
                f"{display}: cannot parse file name {path}: expected "
                f"<campair>_<pid:03d>_<view>_<img:02d>.png (e.g. 1_001_1_01.png); rename or remove it"
            )
        campair, pid, view = int(match["campair"]), int(match["pid"]), int(match["view"])
        if not 1 <= campair <= 5 or not 1 <= pid <= 999:
            raise DatasetFormatError(
                f"{display}: camera pair must be 1..5 and person 1..999 in file name {path}"
            )
        identity = campair * 1000 + pid
        camid = 2 * (campair - 1) + (view - 1)
        by_identity.setdefault(identity, []).append(ImageRecord(str(path), identity, camid))
    if not by_identity:
        raise DatasetFormatError(f"{display}: no images in {images_dir}")

    ids = sorted(by_identity)
    num_test = opts["cuhk03_num_test"]
    if len(ids) <= num_test:
        raise DatasetFormatError(
            f"{display}: {len(ids)} identities in {images_dir}, not enough for "
            f"cuhk03_num_test={num_test} test identities plus at least one training identity; "
            f"lower cuhk03_num_test"
        )
    test_ids = _draw_test_ids(ids, num_test, opts["split_seed"])
    train = [r for i in ids if i not in test_ids for r in by_identity[i]]
    query, gallery, one_view = _split_views(
        {i: by_identity[i] for i in sorted(test_ids)}, opts["split_seed"]
    )
    notes.append(
        f"MLR split (split_seed={opts['split_seed']}): {len(ids) - num_test} train / "
        f"{num_test} test identities; per test identity the queries are one camera view "
        f"(drawn by split_seed), the gallery the other view"
    )
    if one_view:
        notes.append(
            f"{one_view} test identities have images in one view only: gallery only, no query"
        )
    return _RawSplits(
        name="cuhk03",
        source=images_dir,
        train=train,
        query=query,
        gallery=gallery,
        notes=notes,
    )


def _split_views(
    by_identity: dict[int, list[ImageRecord]], seed: int
) -> tuple[list[ImageRecord], list[ImageRecord], int]:
    """MLR-CUHK03 query/gallery: per identity one view, drawn by ``seed``, gives the queries.

    The other view's images form the gallery, so every query has a match from the other
    camera. An identity seen in one view only goes to the gallery (counted, returned third).
    """
    rng = np.random.default_rng([seed, 1])
    query: list[ImageRecord] = []
    gallery: list[ImageRecord] = []
    one_view = 0
    for identity in sorted(by_identity):
        records = by_identity[identity]
        cameras = sorted({r.camid for r in records})
        pick = int(rng.integers(2))  # drawn for every identity, so one does not shift the rest
        if len(cameras) < 2:
            one_view += 1
            gallery.extend(records)
            continue
        query_camera = cameras[pick]
        for r in records:
            (query if r.camid == query_camera else gallery).append(r)
    return query, gallery, one_view


# --------------------------------------------------------------------------------------
# CAVIAR4REID
# --------------------------------------------------------------------------------------

_CAVIAR_RE = re.compile(r"(?P<pid>\d{4})(?P<idx>\d{3})")
_CAVIAR_HINT = "download CAVIAR4REID and extract it so that the images are in <root>/CAVIARa/"


def _read_caviar(root: Path, opts: dict[str, Any]) -> _RawSplits:
    """CAVIAR4REID with its cross-resolution protocol.

    Image ``<pid:04d><idx:03d>.jpg``: idx 1-10 come from the near camera (HR, camid 0),
    11-20 from the far camera (LR, camid 1). Only identities seen by both cameras are
    used (50 in the real dataset; the others are counted in the log). ``caviar_num_test``
    of them (default 25) are test identities, drawn by ``split_seed``. Train = near-camera
    images of the training identities (their LR views are synthesised like every other
    dataset's; far-camera images are never trained on, they are kept in ``train_lowres``
    for validation); query = far-camera images of the test identities (real LR images,
    ``query_is_lowres=True``); gallery = their near-camera images.
    """
    _require_root(root, "CAVIAR4REID", _CAVIAR_HINT)
    folder = root / "CAVIARa"
    if not folder.is_dir():
        if root.name == "CAVIARa" or any(_CAVIAR_RE.fullmatch(p.stem) for p in _list_images(root)):
            folder = root
        else:
            raise DatasetNotFoundError(
                f"CAVIAR4REID not found under {root}: expected {folder}/ ({_CAVIAR_HINT}, "
                f"or pass the CAVIARa folder itself)"
            )
    by_identity: dict[int, list[ImageRecord]] = {}
    for path in _list_images(folder):
        match = _CAVIAR_RE.fullmatch(path.stem)
        if match is None:
            raise DatasetFormatError(
                f"CAVIAR4REID: cannot parse file name {path}: expected <pid:04d><idx:03d>.jpg "
                f"(e.g. 0001001.jpg); rename or remove the file"
            )
        pid, idx = int(match["pid"]), int(match["idx"])
        if not 1 <= idx <= 20:
            raise DatasetFormatError(
                f"CAVIAR4REID: image index {idx} out of range 1..20 in file name {path} "
                f"(001-010 near camera, 011-020 far camera)"
            )
        camid = 0 if idx <= 10 else 1
        by_identity.setdefault(pid, []).append(ImageRecord(str(path), pid, camid))
    if not by_identity:
        raise DatasetFormatError(
            f"CAVIAR4REID: no images in {folder} (expected files like 0001001.jpg)"
        )

    both = sorted(p for p, recs in by_identity.items() if {r.camid for r in recs} == {0, 1})
    single = len(by_identity) - len(both)
    num_test = opts["caviar_num_test"]
    if len(both) <= num_test:
        raise DatasetFormatError(
            f"CAVIAR4REID: {len(both)} identities appear in both cameras in {folder}, not enough "
            f"for caviar_num_test={num_test} test identities plus at least one training "
            f"identity; lower caviar_num_test"
        )
    test_ids = _draw_test_ids(both, num_test, opts["split_seed"])
    train_all = [r for p in both if p not in test_ids for r in by_identity[p]]
    test = [r for p in both if p in test_ids for r in by_identity[p]]
    notes = [
        f"split (split_seed={opts['split_seed']}): {len(both) - num_test} train / {num_test} "
        f"test identities seen by both cameras",
    ]
    if single:
        notes.append(f"not used: {single} identities seen by one camera only (protocol)")
    notes.append(
        "training uses the near-camera (HR) images of the training identities; their "
        "far-camera images serve only as validation queries of held-out identities"
    )
    return _RawSplits(
        name="caviar",
        source=folder,
        train=[r for r in train_all if r.camid == 0],
        train_lowres=[r for r in train_all if r.camid == 1],
        query=[r for r in test if r.camid == 1],
        gallery=[r for r in test if r.camid == 0],
        query_is_lowres=True,
        notes=notes,
    )


# --------------------------------------------------------------------------------------
# Image verification
# --------------------------------------------------------------------------------------


def _image_problem(path: str) -> str | None:
    """Why ``path`` is not a usable image, or None if it decodes to a non-empty image."""
    import cv2

    try:
        data = Path(path).read_bytes()
    except OSError as err:
        return f"cannot read ({err.strerror or err})"
    if not data:
        return "empty file"
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        return "cannot be decoded"
    tail = data.rstrip(b"\x00\r\n ")[-64:]
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in tail:
        return "truncated JPEG (no end-of-image marker)"
    if data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in tail:
        return "truncated PNG (no IEND chunk)"
    return None


def _verify_splits(
    name: str,
    splits: dict[str, list[ImageRecord]],
    *,
    skip: bool,
    notes: list[str],
) -> dict[str, list[ImageRecord]]:
    from tqdm.auto import tqdm

    unique = sorted({r.path for records in splits.values() for r in records})
    bad: dict[str, str] = {}
    for path in tqdm(unique, desc=f"Verifying {name} images", unit="img"):
        problem = _image_problem(path)
        if problem is not None:
            bad[path] = problem
    if not bad:
        return splits
    if not skip:
        listed = sorted(bad.items())
        lines = [f"  {p}: {why}" for p, why in listed[:100]]
        if len(listed) > 100:
            lines.append(f"  ... and {len(listed) - 100} more")
        raise BadImageError(
            f"{name}: {len(bad)} unreadable or corrupt image(s):\n"
            + "\n".join(lines)
            + "\nreplace them, or pass skip_bad_images=True to leave them out"
        )
    logger.warning(
        "%s: skipped %d unreadable or corrupt image(s) (skip_bad_images=True)", name, len(bad)
    )
    for path, why in sorted(bad.items()):
        logger.debug("skipped %s: %s", path, why)
    notes.append(f"skipped {len(bad)} unreadable image(s) (skip_bad_images=True)")
    return {split: [r for r in records if r.path not in bad] for split, records in splits.items()}


_READERS: dict[str, Callable[[Path, dict[str, Any]], _RawSplits]] = {
    "market1501": _read_folder_layout("market1501"),
    "dukemtmc": _read_folder_layout("dukemtmc"),
    "folder": _read_folder_layout("folder"),
    "synthetic": _read_folder_layout("synthetic"),
    "cuhk03": _read_cuhk03,
    "caviar": _read_caviar,
}
