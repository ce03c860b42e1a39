"""CUHK03 (``cuhk-03.mat``, MATLAB v7.3 / HDF5) with the MLR-CUHK03 split.

``cuhk03/cuhk03_release/cuhk-03.mat`` is extracted once to
``cuhk03/images_{detected|labeled}/<campair>_<pid:03d>_<view>_<img:02d>.png``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rareid.data.readers.base import (
    DatasetFiles,
    DatasetFormatError,
    DatasetNotFoundError,
    ImageRecord,
    check_int_option,
    draw_test_ids,
    list_images,
    require_root,
)

__all__ = ["extract_cuhk03", "read_cuhk03"]

logger = logging.getLogger(__name__)

_CUHK03_MARKER = ".rareid_extracted.json"
_CUHK03_RE = re.compile(r"(?P<campair>\d+)_(?P<pid>\d+)_(?P<view>[12])_(?P<img>\d+)")
_CUHK03_HINT = (
    "download cuhk03_release.zip and extract it so that the file is "
    "<root>/cuhk03/cuhk03_release/cuhk-03.mat"
)


def _is_empty_cell(shape: tuple[int, ...]) -> bool:
    """MATLAB stores an empty cell entry ``[]`` as a tiny array (its dims), never as an image."""
    size = int(np.prod(shape)) if shape else 1
    return size == 0 or len(shape) < 3 or size == 2


def _write_person(
    datasets: list[Any], campair: int, pid: int, out_dir: Path, source: str
) -> tuple[int, int]:
    """Write the (up to) ten images of one person as PNGs; returns (written, empty cells)."""
    import cv2

    written = skipped = 0
    for img, dataset in enumerate(datasets, start=1):
        if _is_empty_cell(tuple(dataset.shape)):
            skipped += 1
            continue
        # Stored transposed (MATLAB is column-major): (3, W, H) -> (H, W, 3) RGB.
        rgb = np.ascontiguousarray(np.asarray(dataset[()]).transpose(2, 1, 0))
        if rgb.shape[2] != 3:
            raise DatasetFormatError(
                f"CUHK03: {source} camera pair {campair}, identity "
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
    return written, skipped


def extract_cuhk03(
    mat_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    kind: Literal["detected", "labeled"],
) -> int:
    """Write every ``kind`` ("detected"/"labeled") image of ``cuhk-03.mat`` as a PNG.

    Files are named ``<campair>_<pid:03d>_<view>_<img:02d>.png`` (all 1-based; images 1-5
    are view 1, 6-10 view 2). Empty cells (fewer than 10 images of a person) are skipped:
    those images do not exist. A marker file is written last, so an interrupted
    extraction is redone on the next call. Returns the number of images written.
    """
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
                    datasets = [mat[refs[img - 1, pid - 1]] for img in range(1, 11)]
                    done, empty = _write_person(
                        datasets, campair, pid, out_dir, f"{mat_path} '{kind}'"
                    )
                    written, skipped = written + done, skipped + empty
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
    return len(list_images(images_dir)) == expected


def _cuhk03_identities(images_dir: Path, display: str) -> dict[int, list[ImageRecord]]:
    """The images of ``images_dir`` by identity (``campair * 1000 + pid``), file names checked."""
    by_identity: dict[int, list[ImageRecord]] = {}
    for path in list_images(images_dir):
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

    return by_identity


def read_cuhk03(
    root: Path,
    *,
    split_seed: int = 0,
    cuhk03_labeled: bool = False,
    cuhk03_num_test: int = 100,
) -> DatasetFiles:
    """CUHK03 with the MLR split: ``cuhk03_num_test`` test identities drawn by ``split_seed``;
    ``cuhk03_labeled`` picks the hand-labelled boxes instead of the detected ones.

    An identity is (camera pair, person index); its id is ``campair * 1000 + pid`` (e.g.
    ``3042``). Views 1 and 2 of camera pair ``c`` are cameras ``2(c-1)`` and ``2(c-1)+1``.
    Train = every image of the training identities. MLR-CUHK03: per test identity the
    queries are the images of one view (drawn by ``split_seed``), the gallery the other
    view's images; the evaluation degrades the queries and draws a single-shot gallery.
    """
    split_seed = check_int_option("split_seed", split_seed, 0)
    num_test = check_int_option("cuhk03_num_test", cuhk03_num_test, 1)
    kind = "labeled" if cuhk03_labeled else "detected"
    display = f"CUHK03 ({kind})"
    require_root(root, "CUHK03", _CUHK03_HINT)
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
        elif images_dir.is_dir() and list_images(images_dir):
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

    by_identity = _cuhk03_identities(images_dir, display)
    ids = sorted(by_identity)
    if len(ids) <= num_test:
        raise DatasetFormatError(
            f"{display}: {len(ids)} identities in {images_dir}, not enough for "
            f"cuhk03_num_test={num_test} test identities plus at least one training identity; "
            f"lower cuhk03_num_test"
        )
    test_ids = draw_test_ids(ids, num_test, split_seed)
    train = [r for i in ids if i not in test_ids for r in by_identity[i]]
    query, gallery, one_view = _split_views(
        {i: by_identity[i] for i in sorted(test_ids)}, split_seed
    )
    notes.append(
        f"MLR split (split_seed={split_seed}): {len(ids) - num_test} train / "
        f"{num_test} test identities; per test identity the queries are one camera view "
        f"(drawn by split_seed), the gallery the other view"
    )
    if one_view:
        notes.append(
            f"{one_view} test identities have images in one view only: gallery only, no query"
        )
    return DatasetFiles(
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
