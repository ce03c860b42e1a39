"""Tiny dataset trees in the real on-disk layouts, for tests.

Every writer uses the datasets' exact folder and file names and writes real (small,
decodable) images, so the readers are exercised exactly as on the real data. Other test
files reuse them, e.g. ``from tests.data.fixtures import write_market_tree``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rareid.data.datamodule import ReIDDataModule

MARKET_DIR = "Market-1501-v15.09.15"


def make_image(height: int, width: int, seed: int | Sequence[int]) -> np.ndarray:
    """A deterministic HxWx3 uint8 BGR image: a per-seed colour plus noise and a stripe.

    The stripe (top third brighter) makes the image asymmetric, so a transposed or
    flipped image is detectable.
    """
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 200, size=3)
    noise = rng.integers(-30, 30, size=(height, width, 3))
    image = np.clip(base + noise, 0, 255).astype(np.uint8)
    image[: max(1, height // 3)] = np.clip(image[: max(1, height // 3)].astype(int) + 50, 0, 255)
    return image


def write_image(path: Path, height: int, width: int, seed: int | Sequence[int]) -> Path:
    """Write ``make_image`` to ``path`` (format from the extension) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), make_image(height, width, seed)):
        raise OSError(f"could not write {path}")
    return path


@dataclass
class TreeInfo:
    """Where a fixture tree is and what a reader should find in it."""

    root: Path  # pass this to build_dataset
    base: Path  # folder that holds the split folders
    train: list[Path] = field(default_factory=list)
    query: list[Path] = field(default_factory=list)
    gallery: list[Path] = field(default_factory=list)  # including distractors (pid 0)
    junk: list[Path] = field(default_factory=list)  # pid -1 files (to be dropped)


def _market_name(pid: int, cam: int, frame: int, box: int = 1) -> str:
    # Market writes junk as "-1_..." and other ids zero-padded to 4 digits.
    pid_text = "-1" if pid == -1 else f"{pid:04d}"
    return f"{pid_text}_c{cam}s1_{frame:06d}_{box:02d}.jpg"


def _duke_name(pid: int, cam: int, frame: int) -> str:
    return f"{pid:04d}_c{cam}_f{frame:07d}.jpg"


def _write_split_tree(
    base: Path,
    root: Path,
    folders: tuple[str, str, str],
    namer,
    *,
    train_ids: Sequence[int],
    test_ids: Sequence[int],
    cameras: Sequence[int],
    images_per_camera: int,
    junk: int,
    distractors: int,
    size: tuple[int, int],
    extras: bool,
    seed: int,
) -> TreeInfo:
    info = TreeInfo(root=root, base=base)
    train_dir, query_dir, gallery_dir = (base / f for f in folders)
    for d in (train_dir, query_dir, gallery_dir):
        d.mkdir(parents=True, exist_ok=True)
    h, w = size
    frame = 0

    def put(folder: Path, pid: int, cam: int) -> Path:
        nonlocal frame
        frame += 1
        return write_image(folder / namer(pid, cam, frame), h, w, (seed, pid + 1, frame))

    for pid in train_ids:
        for cam in cameras:
            for _ in range(images_per_camera):
                info.train.append(put(train_dir, pid, cam))
    for pid in test_ids:
        for cam in cameras:
            info.query.append(put(query_dir, pid, cam))  # one query per identity and camera
            for _ in range(images_per_camera):
                info.gallery.append(put(gallery_dir, pid, cam))
    for i in range(distractors):
        info.gallery.append(put(gallery_dir, 0, cameras[i % len(cameras)]))
    for i in range(junk):
        info.junk.append(put(gallery_dir, -1, cameras[i % len(cameras)]))
    if extras:  # non-image files a real download contains; readers must ignore them
        for d in (train_dir, query_dir, gallery_dir):
            (d / "Thumbs.db").write_bytes(b"\x00thumbs")
        (base / "readme.txt").write_text("fixture\n")
    return info


def write_market_tree(
    root: str | Path,
    *,
    train_ids: Sequence[int] = (2, 7, 11, 30),
    test_ids: Sequence[int] = (3, 5, 40),
    cameras: Sequence[int] = (1, 2, 3),
    images_per_camera: int = 2,
    junk: int = 3,
    distractors: int = 2,
    size: tuple[int, int] = (128, 64),
    dirname: str | None = MARKET_DIR,
    extras: bool = True,
    seed: int = 0,
) -> TreeInfo:
    """A small Market-1501 tree with real ``size`` (H, W) JPEGs and the real names.

    Written under ``root/dirname`` (``dirname=None``: directly in ``root``). Train: every
    train id x camera x ``images_per_camera``. Query: one image per test id and camera.
    Gallery: every test id x camera x ``images_per_camera``, plus ``distractors`` pid-0
    images and ``junk`` pid -1 images. A ``Thumbs.db`` sits in every split folder.
    With the defaults: 24 train images (4 ids), 9 queries, 20 gallery images, 3 junk.
    """
    root = Path(root)
    base = root / dirname if dirname else root
    return _write_split_tree(
        base,
        root,
        ("bounding_box_train", "query", "bounding_box_test"),
        _market_name,
        train_ids=train_ids,
        test_ids=test_ids,
        cameras=cameras,
        images_per_camera=images_per_camera,
        junk=junk,
        distractors=distractors,
        size=size,
        extras=extras,
        seed=seed,
    )


def write_duke_tree(
    root: str | Path,
    *,
    train_ids: Sequence[int] = (1, 4, 9),
    test_ids: Sequence[int] = (5, 12),
    cameras: Sequence[int] = (1, 2, 7, 8),
    images_per_camera: int = 1,
    size: tuple[int, int] = (32, 16),
    seed: int = 0,
) -> TreeInfo:
    """A small DukeMTMC-reID tree (``root/DukeMTMC-reID``, names ``0005_c2_f0046985.jpg``)."""
    root = Path(root)
    return _write_split_tree(
        root / "DukeMTMC-reID",
        root,
        ("bounding_box_train", "query", "bounding_box_test"),
        lambda pid, cam, frame: _duke_name(pid, cam, frame),
        train_ids=train_ids,
        test_ids=test_ids,
        cameras=cameras,
        images_per_camera=images_per_camera,
        junk=0,
        distractors=0,
        size=size,
        extras=True,
        seed=seed,
    )


def write_folder_tree(
    root: str | Path,
    *,
    train_ids: Sequence[int] = (10, 20),
    test_ids: Sequence[int] = (30,),
    cameras: Sequence[int] = (1, 2),
    size: tuple[int, int] = (32, 16),
    seed: int = 0,
) -> TreeInfo:
    """A generic ``train/ query/ gallery/`` tree with Market-1501 names directly in ``root``."""
    root = Path(root)
    return _write_split_tree(
        root,
        root,
        ("train", "query", "gallery"),
        _market_name,
        train_ids=train_ids,
        test_ids=test_ids,
        cameras=cameras,
        images_per_camera=1,
        junk=1,
        distractors=1,
        size=size,
        extras=True,
        seed=seed,
    )


# --------------------------------------------------------------------------------------
# CUHK03: cuhk-03.mat in the structure of the real MATLAB v7.3 (HDF5) file
# --------------------------------------------------------------------------------------


@dataclass
class Cuhk03Info:
    """A fixture ``cuhk-03.mat`` and what extracting it should produce."""

    root: Path  # pass this to build_dataset
    mat_path: Path
    # kind -> file name -> HxWx3 RGB image expected after extraction
    images: dict[str, dict[str, np.ndarray]]
    num_identities: int


def _cuhk03_present(kind: str, campair: int, pid: int, img: int) -> bool:
    """Which of the 10 cells of a person hold an image (deterministic, a few empty)."""
    # Every person has images in both views; some have fewer than 5 per view.
    if img in (1, 6):
        return True
    drop = (campair * 7 + pid * 3 + img + (1 if kind == "labeled" else 0)) % 4 == 0
    return not drop


def write_cuhk03_mat(
    root: str | Path,
    *,
    pids_per_pair: Sequence[int] = (5, 4, 3, 2, 2),
    size: tuple[int, int] = (16, 8),
    seed: int = 0,
) -> Cuhk03Info:
    """Write ``root/cuhk03/cuhk03_release/cuhk-03.mat`` like the real file, but tiny.

    Structure (as h5py sees the MATLAB v7.3 file): datasets ``detected`` and ``labeled`` of
    shape (1, 5) holding object references to 5 cell arrays; each cell array has shape
    (10, n_ids) of references (5 images of view 1, then 5 of view 2); each image is stored
    transposed, shape (3, W, H) uint8 RGB; empty cells are MATLAB's empty array, stored
    as the 2-element uint64 array of its dims (plus an ``MATLAB_empty`` attribute) or,
    for some, as a zero-size array. Image heights vary per image, as in the real data.
    """
    import h5py

    root = Path(root)
    mat_path = root / "cuhk03" / "cuhk03_release" / "cuhk-03.mat"
    mat_path.parent.mkdir(parents=True, exist_ok=True)
    expected: dict[str, dict[str, np.ndarray]] = {"detected": {}, "labeled": {}}
    counter = 0
    with h5py.File(mat_path, "w") as f:
        f.attrs["MATLAB_class"] = np.bytes_("struct")  # cosmetic: what MATLAB writes
        refs_group = f.create_group("#refs#")

        def new_name() -> str:
            nonlocal counter
            counter += 1
            return f"r{counter}"

        for kind in ("detected", "labeled"):
            pair_refs = np.empty((1, len(pids_per_pair)), dtype=h5py.ref_dtype)
            for c, n_ids in enumerate(pids_per_pair, start=1):
                cell = refs_group.create_dataset(
                    new_name(), shape=(10, n_ids), dtype=h5py.ref_dtype
                )
                cell_refs = np.empty((10, n_ids), dtype=h5py.ref_dtype)
                for pid in range(1, n_ids + 1):
                    for img in range(1, 11):
                        if _cuhk03_present(kind, c, pid, img):
                            h, w = size[0] + (pid + img) % 3 * 2, size[1]
                            bgr = make_image(h, w, seed * 7919 + c * 1000 + pid * 20 + img)
                            rgb = bgr[:, :, ::-1].copy()
                            ds = refs_group.create_dataset(new_name(), data=rgb.transpose(2, 1, 0))
                            view = 1 if img <= 5 else 2
                            expected[kind][f"{c}_{pid:03d}_{view}_{img:02d}.png"] = rgb
                        elif (pid + img) % 2:
                            ds = refs_group.create_dataset(
                                new_name(), data=np.zeros(2, dtype=np.uint64)
                            )
                            ds.attrs["MATLAB_empty"] = np.uint8(1)
                        else:
                            ds = refs_group.create_dataset(new_name(), shape=(0, 0), dtype=np.uint8)
                        cell_refs[img - 1, pid - 1] = ds.ref
                cell[...] = cell_refs
                pair_refs[0, c - 1] = cell.ref
            f.create_dataset(kind, data=pair_refs)
    return Cuhk03Info(
        root=root, mat_path=mat_path, images=expected, num_identities=sum(pids_per_pair)
    )


# --------------------------------------------------------------------------------------
# CAVIAR4REID
# --------------------------------------------------------------------------------------


@dataclass
class CaviarInfo:
    root: Path
    folder: Path
    both_ids: list[int]
    near: dict[int, list[Path]]
    far: dict[int, list[Path]]


def write_caviar_tree(
    root: str | Path,
    *,
    both_ids: Iterable[int] = range(1, 9),
    near_only_ids: Iterable[int] = (9, 10),
    far_only_ids: Iterable[int] = (11,),
    images_per_camera: int = 3,
    near_size: tuple[int, int] = (64, 32),
    far_size: tuple[int, int] = (24, 12),
    seed: int = 0,
) -> CaviarInfo:
    """``root/CAVIARa/<pid:04d><idx:03d>.jpg``: idx 1.. near camera (large), 11.. far (small).

    Identities in ``near_only_ids``/``far_only_ids`` have images in one camera only, as
    22 of the 72 real identities do.
    """
    root = Path(root)
    folder = root / "CAVIARa"
    folder.mkdir(parents=True, exist_ok=True)
    both_ids, near_only, far_only = list(both_ids), list(near_only_ids), list(far_only_ids)
    info = CaviarInfo(root=root, folder=folder, both_ids=both_ids, near={}, far={})
    for pid in both_ids + near_only + far_only:
        if pid not in far_only:
            info.near[pid] = [
                write_image(folder / f"{pid:04d}{i:03d}.jpg", *near_size, seed + pid * 100 + i)
                for i in range(1, images_per_camera + 1)
            ]
        if pid not in near_only:
            info.far[pid] = [
                write_image(folder / f"{pid:04d}{i:03d}.jpg", *far_size, seed + pid * 100 + i)
                for i in range(11, 11 + images_per_camera)
            ]
    (folder / "Thumbs.db").write_bytes(b"\x00thumbs")
    return info


def market_datamodule(root: str | Path, **options: Any) -> ReIDDataModule:
    """A small ``ReIDDataModule`` on a tree written by :func:`write_market_tree` (no workers);
    ``options`` override the defaults."""
    return ReIDDataModule(
        **{"dataset": "market1501", "root": str(root), "p": 2, "num_workers": 0, **options}
    )
