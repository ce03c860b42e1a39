"""Market-1501-style layouts: Market-1501, DukeMTMC-reID, a generic folder, synthetic.

==============  ============================================================================
name            layout under ``root``
==============  ============================================================================
market1501      ``Market-1501-v15.09.15/`` or ``market1501/`` (or ``root`` itself) with
                ``bounding_box_train/ query/ bounding_box_test/``;
                ``<pid>_c<cam>s<seq>_<frame>_<box>.jpg``
dukemtmc        ``DukeMTMC-reID/`` (or ``root`` itself), same folders; ``<pid>_c<cam>_f<frame>.jpg``
folder          ``train/ query/ gallery/`` with Market-style names ``<pid>_c<cam>[...]``
synthetic       Market-1501 layout in ``synthetic/`` or in ``root`` itself
==============  ============================================================================

The training folder is optional: a dataset without one can still be tested (evaluation
never needs the training identities).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from rareid.data.readers.base import (
    DatasetFiles,
    DatasetFormatError,
    DatasetNotFoundError,
    ImageRecord,
    list_images,
    require_dir,
    require_root,
)

__all__ = ["LAYOUTS", "FolderLayout", "FolderLayoutReader"]


@dataclass(frozen=True)
class FolderLayout:
    """Where a Market-style dataset keeps its split folders and how its files are named."""

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


LAYOUTS: dict[str, FolderLayout] = {
    "market1501": FolderLayout(
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
    "dukemtmc": FolderLayout(
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
    "folder": FolderLayout(
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
    "synthetic": FolderLayout(
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


def _find_layout_base(root: Path, layout: FolderLayout) -> Path:
    """The folder that holds the split folders: a named sub-folder, or root itself.

    It is recognised by its training or its query folder (a test-only copy has no
    training folder).
    """
    hint = f"{layout.download_hint}, or pass the folder that contains {layout.query}/"
    require_root(root, layout.display, hint)
    candidates = [root / sub for sub in layout.subdirs] + [root]
    for candidate in candidates:
        if (candidate / layout.train).is_dir() or (candidate / layout.query).is_dir():
            return candidate
    # Nothing has the split folders: name the most likely place they should be.
    existing = [c for c in candidates[:-1] if c.is_dir()]
    expected = (existing[0] if existing else candidates[0]) / layout.query
    raise DatasetNotFoundError(
        f"{layout.display} not found under {root}: expected {expected} ({hint})"
    )


def _parse_folder(
    folder: Path,
    layout: FolderLayout,
    split: str,
    *,
    allow_distractors: bool,
) -> tuple[list[ImageRecord], int]:
    """Records of one split folder and the number of junk (pid -1) images dropped."""
    records: list[ImageRecord] = []
    junk = 0
    for path in list_images(folder):
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


class FolderLayoutReader:
    """Reader of one Market-style layout (no options of its own)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.layout = LAYOUTS[name]

    def __call__(self, root: Path) -> DatasetFiles:
        layout = self.layout
        base = _find_layout_base(root, layout)
        hint = "the dataset looks incomplete; extract it again"
        for sub in (layout.query, layout.gallery):
            require_dir(base / sub, f"{layout.display} at {base}", hint)
        splits: dict[str, list[ImageRecord]] = {"train": []}
        notes: list[str] = []
        for split, sub in (
            ("train", layout.train),
            ("query", layout.query),
            ("gallery", layout.gallery),
        ):
            if split == "train" and not (base / sub).is_dir():
                notes.append(f"no {sub}/ folder: this copy can be tested, not trained on")
                continue
            records, junk = _parse_folder(
                base / sub, layout, split, allow_distractors=split == "gallery"
            )
            splits[split] = records
            if junk:
                notes.append(f"dropped {junk} junk image(s) (pid -1) from {sub}/")
        return DatasetFiles(
            name=self.name,
            source=base,
            train=splits["train"],
            query=splits["query"],
            gallery=splits["gallery"],
            notes=notes,
        )
