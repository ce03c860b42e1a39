"""Writing a synthetic dataset to disk in the Market-1501 layout: parameters, file plan, files.

The plan (which pid, camera and frame goes to which folder) depends only on the parameters, and
each image only on its own seed words, so the same parameters give byte-identical folders.

``synthetic.files`` (the manifest, written before the first image) lists every file the writer
puts in the dataset tree. Rewriting a dataset deletes exactly those: files a user added inside
the tree survive, are counted in the summary, and a user's file under a name the new dataset
would write stops the rewrite instead of being overwritten.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rareid.data.synthetic.common import GENERATOR_VERSION, IMAGE_SIZE, JPEG_QUALITY
from rareid.data.synthetic.plan import SHAPES, Job, plan, shape_params
from rareid.data.synthetic.world import SyntheticWorld

MANIFEST = "synthetic.files"
_FOLDERS = ("bounding_box_train", "query", "bounding_box_test")
_OUR_FILES = ("README.txt", "synthetic.json", ".complete", MANIFEST)
_OUR_ENTRIES = (*_FOLDERS, *_OUR_FILES)


@dataclass(frozen=True)
class SyntheticSummary:
    """What was written (or found complete) under ``root``."""

    root: Path
    seed: int
    identities: int
    train_identities: int
    test_identities: int
    cameras: int
    train_images: int
    query_images: int
    gallery_images: int  # including distractors and junk
    distractors: int
    junk: int
    groups: int  # number of coarse groups
    written: bool = True  # False when ensure_synthetic_dataset found it already complete
    kept_files: tuple[str, ...] = ()  # files in the tree the writer did not write (kept)

    @property
    def total_images(self) -> int:
        return self.train_images + self.query_images + self.gallery_images

    def __str__(self) -> str:
        verb = "wrote" if self.written else "found complete"
        return (
            f"synthetic dataset ({verb}) at {self.root}: {self.identities} identities "
            f"({self.train_identities} train / {self.test_identities} test, {self.groups} coarse "
            f"groups), {self.cameras} cameras, seed {self.seed}; {self.train_images} train, "
            f"{self.query_images} query, {self.gallery_images} gallery images "
            f"(incl. {self.distractors} distractors, {self.junk} junk)" + self._kept_note()
        )

    def _kept_note(self) -> str:
        if not self.kept_files:
            return ""
        names = ", ".join(self.kept_files[:5]) + (", ..." if len(self.kept_files) > 5 else "")
        return (
            f"; kept {len(self.kept_files)} file{'s' if len(self.kept_files) != 1 else ''} "
            f"rareid synth did not write ({names}): "
            "image files among them in the dataset folders are read as part of the dataset"
        )


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _normalize_params(
    identities: Any,
    seed: Any,
    cameras: Any,
    images_per_camera: Any,
    train_fraction: Any,
    distractors: Any,
    junk: Any,
    like: str | None = None,
) -> dict[str, Any]:
    if like is not None:  # a published benchmark's counts replace the size options
        if like not in SHAPES:
            raise ValueError(f"--like: expected one of {', '.join(sorted(SHAPES))}, got {like!r}")
        return {
            "seed": _check_int("seed", seed, 0),
            **shape_params(SHAPES[like]),
            "like": like,
            "image_size": list(IMAGE_SIZE),
            "jpeg_quality": JPEG_QUALITY,
            "version": GENERATOR_VERSION,
        }
    identities = _check_int("identities", identities, 2)
    seed = _check_int("seed", seed, 0)
    cameras = _check_int("cameras", cameras, 2)
    if isinstance(images_per_camera, (int, np.integer)) and not isinstance(images_per_camera, bool):
        lo = hi = _check_int("images_per_camera", images_per_camera, 1)
    elif isinstance(images_per_camera, Sequence) and len(images_per_camera) == 2:
        lo = _check_int("images_per_camera[0]", images_per_camera[0], 1)
        hi = _check_int("images_per_camera[1]", images_per_camera[1], lo)
    else:
        raise ValueError(
            f"images_per_camera must be an int >= 1 or a (min, max) pair, got {images_per_camera!r}"
        )
    if isinstance(train_fraction, bool) or not isinstance(train_fraction, (int, float)):
        raise ValueError(f"train_fraction must be a number in (0, 1), got {train_fraction!r}")
    if not 0.0 < float(train_fraction) < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    n_train = round(identities * float(train_fraction))
    if not 1 <= n_train <= identities - 1:
        raise ValueError(
            f"train_fraction={train_fraction} with identities={identities} leaves {n_train} "
            "training identities; both train and test need at least one identity"
        )
    return {
        "identities": identities,
        "seed": seed,
        "cameras": cameras,
        "images_per_camera": [lo, hi],
        "train_fraction": float(train_fraction),
        "train_identities": n_train,
        "distractors": _check_int("distractors", distractors, 0),
        "junk": _check_int("junk", junk, 0),
        "image_size": list(IMAGE_SIZE),
        "jpeg_quality": JPEG_QUALITY,
        "version": GENERATOR_VERSION,
    }


def _readme(params: dict[str, Any], summary: SyntheticSummary) -> str:
    return f"""rareid synthetic pedestrian dataset (Market-1501 layout)
=========================================================

Written by rareid.data.synthetic.write_synthetic_dataset (generator version {GENERATOR_VERSION}).
Seed: {params["seed"]}. Same parameters and seed give byte-identical files.

Parameters: {json.dumps(params, sort_keys=True)}

Layout: bounding_box_train/ holds pids 1..{params["train_identities"]}; query/ and bounding_box_test/
hold pids {params["train_identities"] + 1}..{params["identities"]}. File names: <pid:04d>_c<cam>s1_<frame:06d>_01.jpg
(cameras 1-based). pid 0000 = distractor (a person outside the identity set), pid -1 = junk
(bad detections); both only in the gallery. Each test identity has one query from each of up
to 2 cameras (a benchmark's shape: up to all of them) and a gallery image in another camera.

Images: 128x64 RGB JPEG (quality {JPEG_QUALITY}), drawn procedurally with OpenCV. Identities come
in coarse groups of 4-6 that share clothing colours, build, height, hair and skin (ambiguous at
low resolution); group members differ in fine details visible only at high resolution (1-2 px
torso stripes/checks/dots, a 4-6 px chest logo seen from the front, belt, bag strap, bag,
glasses/headband, shoes). Cameras differ in viewpoint, illumination (gain, colour cast, gamma),
background clutter, blur, noise and occlusion; each image has small pose jitter.

Counts: {summary.train_images} train, {summary.query_images} query and {summary.gallery_images} gallery images
({summary.distractors} distractors, {summary.junk} junk); {summary.groups} coarse groups, listed (as pids) in synthetic.json.
"""


def _written_before(root: Path, entries: set[str]) -> set[str] | None:
    """Paths (relative, POSIX) an earlier write put under ``root``: its manifest, else the plan
    of the parameters in its ``synthetic.json`` (datasets written before the manifest); None
    when neither can be read."""
    manifest = root / MANIFEST
    if manifest.is_file():
        return {line for line in manifest.read_text().splitlines() if line}
    try:
        params = json.loads((root / "synthetic.json").read_text())["params"]
        jobs = plan(params)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return {f"{job.folder}/{job.name}" for job in jobs}


def _user_files(root: Path, ours: set[str]) -> list[str]:
    """Files under the dataset folders that are not the writer's (relative, POSIX, sorted)."""
    found = []
    for folder in _FOLDERS:
        if (root / folder).is_dir():
            for path in (root / folder).rglob("*"):
                relative = path.relative_to(root).as_posix()
                if not path.is_dir() and relative not in ours:
                    found.append(relative)
    return sorted(found)


def _top_level_user_files(root: Path, entries: set[str]) -> list[str]:
    """Files beside the dataset folders that the writer never writes (relative, POSIX): a
    rewrite leaves them where they are, and the dataset reader never reads them."""
    found = []
    for name in sorted(entries - set(_OUR_ENTRIES)):
        path = root / name
        if path.is_dir() and not path.is_symlink():
            found += [
                child.relative_to(root).as_posix()
                for child in path.rglob("*")
                if not child.is_dir()
            ]
        else:
            found.append(name)
    return found


def _prepare_folder(root: Path, planned: set[str]) -> tuple[str, ...]:
    """Create ``root`` or delete what a previous synthetic dataset wrote there; refuse a folder
    that holds no synthetic dataset and a user's file under a ``planned`` name. Returns the
    user's files, which are kept (in the dataset folders and beside them)."""
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"synthetic dataset output {root} exists and is not a folder")
    if not root.exists():
        root.mkdir(parents=True)
        return ()
    entries = {p.name for p in root.iterdir()}
    if not entries:
        return ()
    if not entries & {"synthetic.json", MANIFEST}:
        raise FileExistsError(
            f"synthetic dataset output {root} already exists and does not hold a rareid synthetic "
            f"dataset (found {sorted(entries)[:5]}); choose an empty or new folder"
        )
    ours = _written_before(root, entries)
    if ours is None:
        count = len(_user_files(root, set()))
        raise FileExistsError(
            f"synthetic dataset output {root}: neither {MANIFEST} nor synthetic.json says which "
            f"of its {count} files rareid synth wrote; move the folder away or delete it"
        )
    kept = _user_files(root, ours) + _top_level_user_files(root, entries)
    clash = [name for name in kept if name in planned]
    if clash:
        raise FileExistsError(
            f"synthetic dataset output {root}: {len(clash)} file(s) that rareid synth did not "
            f"write have names the new dataset writes ({', '.join(clash[:5])}); move them "
            "elsewhere first"
        )
    for relative in sorted(ours):
        (root / relative).unlink(missing_ok=True)
    for name in _OUR_FILES:
        (root / name).unlink(missing_ok=True)
    return tuple(sorted(kept))


def _write_images(world: SyntheticWorld, jobs: list[Job], root: Path, progress: bool) -> None:
    """Render and write every planned file as a JPEG (BGR on disk, like any camera dump)."""
    for folder in _FOLDERS:
        (root / folder).mkdir(exist_ok=True)
    encode = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    iterator: Any = jobs
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(jobs, desc="synthetic images", unit="img", mininterval=0.5)
    for job in iterator:
        rgb = world.render(job.pid, job.cam, job.frame)
        path = root / job.folder / job.name
        if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), encode):
            raise OSError(f"could not write {path} (disk full or folder not writable?)")


def write_synthetic_dataset(
    out: str | Path,
    identities: int = 100,
    seed: int = 0,
    cameras: int = 4,
    images_per_camera: int | tuple[int, int] = (4, 6),
    train_fraction: float = 0.5,
    distractors: int = 100,
    junk: int = 50,
    progress: bool = True,
    like: str | None = None,
) -> SyntheticSummary:
    """Write the synthetic dataset in the Market-1501 layout under ``out``; return its summary.

    ``images_per_camera`` is images per identity per camera (an int, or a (min, max) range drawn
    per identity and camera). The first ``round(identities * train_fraction)`` pids train, the rest
    test. ``out`` must be new/empty or hold a previous synthetic dataset: the files that one
    wrote (its manifest) are replaced; other files in its folders are kept and counted.
    The defaults give ~2,000 identity images plus 150 distractor/junk images. ``like`` (a name
    in :data:`rareid.data.synthetic.plan.SHAPES`, e.g. ``"market1501"``) writes a published
    benchmark's exact counts instead of the size options (all but ``seed`` and ``progress``).
    """
    params = _normalize_params(
        identities, seed, cameras, images_per_camera, train_fraction, distractors, junk, like
    )
    root = Path(out)
    jobs = plan(params)
    planned = [f"{job.folder}/{job.name}" for job in jobs]
    kept = _prepare_folder(root, set(planned))
    # The manifest first: a write killed halfway is still known to be ours next time.
    (root / MANIFEST).write_text("\n".join(planned) + "\n")
    world = SyntheticWorld(
        params["identities"], params["seed"], params["cameras"], params["train_identities"]
    )
    _write_images(world, jobs, root, progress)

    count = {f: 0 for f in ("bounding_box_train", "query", "bounding_box_test")}
    for job in jobs:
        count[job.folder] += 1
    summary = SyntheticSummary(
        root=root,
        seed=params["seed"],
        identities=params["identities"],
        train_identities=params["train_identities"],
        test_identities=params["identities"] - params["train_identities"],
        cameras=params["cameras"],
        train_images=count["bounding_box_train"],
        query_images=count["query"],
        gallery_images=count["bounding_box_test"],
        distractors=params["distractors"],
        junk=params["junk"],
        groups=len(world.groups),
        kept_files=kept,
    )
    transient = ("root", "written", "kept_files")
    meta = {
        "generator": "rareid.data.synthetic",
        "params": params,
        "summary": {k: v for k, v in asdict(summary).items() if k not in transient},
        "groups": world.groups,
    }
    (root / "synthetic.json").write_text(json.dumps(meta, indent=1) + "\n")
    (root / "README.txt").write_text(_readme(params, summary))
    (root / ".complete").write_text("ok\n")  # last: marks a finished dataset
    return summary


def ensure_synthetic_dataset(
    out: str | Path,
    identities: int = 100,
    seed: int = 0,
    cameras: int = 4,
    images_per_camera: int | tuple[int, int] = (4, 6),
    train_fraction: float = 0.5,
    distractors: int = 100,
    junk: int = 50,
    progress: bool = True,
    like: str | None = None,
) -> SyntheticSummary:
    """Write the dataset unless ``out`` already holds a complete one with the same parameters.

    Why: tests, notebooks and the quickstart call this on every run; rewriting ~2,000 images each
    time is wasteful. A folder with other content raises ``FileExistsError``.
    """
    params = _normalize_params(
        identities, seed, cameras, images_per_camera, train_fraction, distractors, junk, like
    )
    root = Path(out)
    meta_path = root / "synthetic.json"
    if (root / ".complete").is_file() and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            meta = {}
        if meta.get("params") == params:
            s = meta["summary"]
            return SyntheticSummary(root=root, written=False, **s)
    return write_synthetic_dataset(
        root,
        identities=identities,
        seed=seed,
        cameras=cameras,
        images_per_camera=images_per_camera,
        train_fraction=train_fraction,
        distractors=distractors,
        junk=junk,
        progress=progress,
        like=like,
    )
