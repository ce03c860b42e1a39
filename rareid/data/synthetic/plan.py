"""Which files a synthetic dataset holds: one job (folder, pid, camera, frame) per image.

Two plans. The default draws a few images per identity and camera (``images_per_camera``).
A *shape* (:data:`SHAPES`, ``rareid synth --like market1501``) fixes the exact counts of a
published benchmark instead, so that loading, training, evaluation and search can be timed at
the size a user's real dataset has. Both depend only on the parameters, never on the order
images are drawn in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from rareid.data.synthetic.common import _K_DISTRACTOR, _K_JUNK, _K_LAYOUT, _rng

__all__ = ["SHAPES", "DatasetShape", "Job", "plan"]

_K_SHAPE = 1 << 20  # layout stream of a shaped plan (pids never reach it)


@dataclass(frozen=True)
class DatasetShape:
    """The exact image counts of a benchmark split (junk and distractors in the gallery)."""

    train_identities: int
    train_images: int
    test_identities: int
    query_images: int  # at most one per identity and camera, as in Market-1501
    gallery_images: int  # images of the test identities, distractors and junk excluded
    distractors: int  # pid 0
    junk: int  # pid -1, dropped by the readers
    cameras: int

    def check(self) -> None:
        """Raise ValueError when no plan can have these counts."""
        if self.cameras < 2 or self.train_identities < 1 or self.test_identities < 1:
            raise ValueError(f"shape {self}: needs >= 2 cameras, >= 1 train and test identity")
        if self.train_images < 2 * self.train_identities:
            raise ValueError(f"shape {self}: fewer than 2 train images per identity")
        if not self.test_identities <= self.query_images <= self.test_identities * self.cameras:
            raise ValueError(f"shape {self}: 1 to {self.cameras} queries per test identity")
        if self.gallery_images < 2 * self.test_identities + self.query_images:
            raise ValueError(f"shape {self}: too few gallery images for a cross-camera match")


#: Market-1501 (Zheng et al. 2015) as published: 12,936 train images of 751 identities;
#: 3,368 queries of 750 identities against 19,732 gallery images, of which 2,793 distractors
#: and 3,819 junk (15,913 once junk is dropped).
SHAPES: dict[str, DatasetShape] = {
    "market1501": DatasetShape(751, 12_936, 750, 3_368, 13_120, 2_793, 3_819, 6),
}


@dataclass(frozen=True)
class Job:
    """One file of the dataset."""

    folder: str
    pid: int
    cam: int  # 0-based
    frame: int

    @property
    def name(self) -> str:
        pid = "-1" if self.pid < 0 else f"{self.pid:04d}"
        return f"{pid}_c{self.cam + 1}s1_{self.frame:06d}_01.jpg"


def _frames(rng: np.random.Generator, n: int) -> list[int]:
    """Distinct increasing frame numbers (like a tracker's), all < 10**6."""
    steps = rng.integers(15, 400, size=n)
    return (int(rng.integers(1, 5000)) + np.cumsum(steps)).tolist()


def _pick_queries(per_cam: dict[int, list[int]], rng: np.random.Generator) -> dict[int, int]:
    """One query image from each of up to 2 cameras, keeping a cross-camera gallery match.

    Returns {camera: index of its query frame}. Each query camera q must keep, after removing
    the queries, a gallery image of the same identity in some camera != q.
    """
    order = [int(c) for c in rng.permutation(sorted(per_cam))]

    def valid(qcams: list[int]) -> bool:
        left = {c: len(fs) - (c in qcams) for c, fs in per_cam.items()}
        return all(any(n > 0 for c, n in left.items() if c != q) for q in qcams)

    first = order[0]
    chosen = [first]
    for c in order[1:]:
        if valid([first, c]):
            chosen.append(c)
            break
    if not valid(chosen):  # cannot happen with >= 2 cameras and >= 1 image each
        raise RuntimeError("internal error: no valid query camera")
    return {c: int(rng.integers(len(per_cam[c]))) for c in chosen}


def _spread(total: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """``total`` images over ``cells`` cells, at least one each, uneven like real tracks."""
    weights = rng.gamma(2.0, 1.0, size=cells)
    return 1 + rng.multinomial(total - cells, weights / weights.sum())


def _camera_sets(
    count: int, least: np.ndarray, cameras: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """For each identity, a random set of at least ``least[i]`` (and >= 2) cameras."""
    sets = []
    for i in range(count):
        size = int(rng.integers(max(2, int(least[i])), cameras + 1))
        sets.append(np.sort(rng.choice(cameras, size=size, replace=False)))
    return sets


def _shaped_plan(params: dict[str, Any]) -> list[Job]:
    """Jobs with exactly the counts of ``params["shape"]``."""
    shape = DatasetShape(**params["shape"])
    rng = _rng(params["seed"], _K_LAYOUT, _K_SHAPE)
    cams = shape.cameras
    jobs: list[Job] = []
    train_sets = _camera_sets(shape.train_identities, np.full(shape.train_identities, 2), cams, rng)
    counts = iter(_spread(shape.train_images, sum(len(s) for s in train_sets), rng).tolist())
    for pid, cam_set in enumerate(train_sets, start=1):
        for cam in cam_set.tolist():
            jobs += [Job("bounding_box_train", pid, cam, f) for f in _frames(rng, next(counts))]
    # Queries: one per camera for q_i of an identity's cameras, q_i in 1..cameras.
    extra_slots = np.repeat(np.arange(shape.test_identities), cams - 1)
    chosen = rng.choice(
        extra_slots.size, size=shape.query_images - shape.test_identities, replace=False
    )
    queries = 1 + np.bincount(extra_slots[chosen], minlength=shape.test_identities)
    test_sets = _camera_sets(shape.test_identities, queries, cams, rng)
    # Every camera of a test identity keeps >= 1 gallery image and there are >= 2 cameras,
    # so each query has a gallery match in another camera.
    counts = iter(_spread(shape.gallery_images, sum(len(s) for s in test_sets), rng).tolist())
    for offset, cam_set in enumerate(test_sets):
        pid = shape.train_identities + 1 + offset
        query_cams = set(rng.choice(cam_set, size=int(queries[offset]), replace=False).tolist())
        for cam in cam_set.tolist():
            gallery = next(counts)
            frames = _frames(rng, gallery + (cam in query_cams))
            query_at = int(rng.integers(len(frames))) if cam in query_cams else -1
            for i, frame in enumerate(frames):
                folder = "query" if i == query_at else "bounding_box_test"
                jobs.append(Job(folder, pid, cam, frame))
    return jobs + _outsiders(params)


def _outsiders(params: dict[str, Any]) -> list[Job]:
    """Distractors (pid 0) and junk (pid -1), spread over the cameras."""
    seed, cams = params["seed"], params["cameras"]
    jobs: list[Job] = []
    for kind, pid, count in (
        (_K_DISTRACTOR, 0, params["distractors"]),
        (_K_JUNK, -1, params["junk"]),
    ):
        rng = _rng(seed, _K_LAYOUT, kind)
        cams_of = rng.integers(0, cams, size=count)
        for c in range(cams):
            n = int((cams_of == c).sum())
            jobs += [Job("bounding_box_test", pid, c, f) for f in _frames(rng, n)]
    return jobs


def plan(params: dict[str, Any]) -> list[Job]:
    """All files to write; depends only on the parameters (never on generation order)."""
    if "shape" in params:
        return _shaped_plan(params)
    seed, cams = params["seed"], params["cameras"]
    lo, hi = params["images_per_camera"]
    n_train = params["train_identities"]
    jobs: list[Job] = []
    for pid in range(1, params["identities"] + 1):
        rng = _rng(seed, _K_LAYOUT, pid)
        per_cam = {c: _frames(rng, int(rng.integers(lo, hi + 1))) for c in range(cams)}
        if pid <= n_train:
            jobs += [Job("bounding_box_train", pid, c, f) for c, fs in per_cam.items() for f in fs]
            continue
        queries = _pick_queries(per_cam, rng)
        for c, fs in per_cam.items():
            for i, f in enumerate(fs):
                folder = "query" if queries.get(c) == i else "bounding_box_test"
                jobs.append(Job(folder, pid, c, f))
    return jobs + _outsiders(params)


def shape_params(shape: DatasetShape) -> dict[str, Any]:
    """The writer's parameters that a shape fixes."""
    shape.check()
    return {
        "shape": asdict(shape),
        "identities": shape.train_identities + shape.test_identities,
        "train_identities": shape.train_identities,
        "cameras": shape.cameras,
        "distractors": shape.distractors,
        "junk": shape.junk,
    }
