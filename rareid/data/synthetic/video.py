"""Synthetic camera videos: people walking through several cameras' scenes, for tracklets.

Why: tracklet matching has to be measured where a person's resolution changes frame by frame,
with no download. Each walker is one of the world's identities (by default the test identities
of ``rareid synth``, which a model trained on that dataset never saw); it crosses every camera
once, approaching it (growing), leaving it (shrinking) or passing by at one distance, among
other walkers and random passers-by, behind a static occluder of each scene. A person is drawn
at the native 128x64 size (so fine details exist) and shrunk to its distance, like a real
camera does. The ground truth is written as MOTChallenge files, and the crops as
``tracks/<camera>/<track_id>/`` folders; same seed, same bytes.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from rareid.data.synthetic.common import (
    _H,
    _W,
    JPEG_QUALITY,
    VIEW_BACK,
    VIEW_FRONT,
    VIEW_LEFT,
    VIEW_RIGHT,
    _rng,
)
from rareid.data.synthetic.person import draw_person
from rareid.data.synthetic.world import SyntheticWorld

#: Scene (height, width) in pixels and the smallest / largest scale of a 128 px figure.
SCENE_SIZE = (192, 256)
NEAR_SCALE, FAR_SCALE = 1.0, 0.28
WALKS = ("approach", "leave", "cross")
_K_VIDEO = 41  # random stream kind of the videos (apart from the image generator's kinds)


@dataclass
class Walk:
    """One person's pass through one camera: frames ``start..start + length - 1``."""

    pid: int  # world identity; 0 for a passer-by
    camera: int
    track_id: int
    start: int
    length: int
    kind: str
    seed: int

    def state(self, frame: int) -> tuple[float, float, int, float]:
        """(scale, centre x in [0, 1], view, gait phase) at ``frame``."""
        progress = (frame - self.start) / max(1, self.length - 1)
        rng = _rng(self.seed, _K_VIDEO, self.pid, self.camera, self.track_id)
        lane, depth = float(rng.uniform(0.25, 0.75)), float(rng.uniform(0.45, 0.9))
        if self.kind == "approach":
            scale, centre, view = FAR_SCALE + (NEAR_SCALE - FAR_SCALE) * progress, lane, VIEW_FRONT
        elif self.kind == "leave":
            scale, centre, view = NEAR_SCALE - (NEAR_SCALE - FAR_SCALE) * progress, lane, VIEW_BACK
        else:
            rightwards = rng.random() < 0.5
            centre = -0.05 + 1.1 * (progress if rightwards else 1 - progress)
            scale, view = depth, VIEW_RIGHT if rightwards else VIEW_LEFT
        return scale, centre, view, 2 * math.pi * (frame - self.start) / 9.0


@dataclass
class VideoScenes:
    """What :func:`plan_walks` decided: every walk, and each camera's number of frames."""

    walks: list[Walk] = field(default_factory=list)
    frames: dict[int, int] = field(default_factory=dict)


def plan_walks(
    world: SyntheticWorld, walkers: list[int], cameras: int, passers_by: int, seed: int
) -> VideoScenes:
    """Each walker once through every camera (staggered entries, a random kind of walk), plus
    ``passers_by`` strangers per camera."""
    scenes = VideoScenes()
    for camera in range(cameras):
        rng = _rng(seed, _K_VIDEO, 0, camera, 10_000)
        people = [(pid, 0) for pid in walkers] + [(0, stranger) for stranger in range(passers_by)]
        order = rng.permutation(len(people))
        end = 0
        for position, item in enumerate(order.tolist()):
            pid, stranger = people[item]
            start = 1 + position * 7 + int(rng.integers(0, 6))
            length = int(rng.integers(24, 37))
            kind = WALKS[int(rng.integers(0, len(WALKS)))]
            walk = Walk(pid, camera, position + 1, start, length, kind, seed + stranger)
            scenes.walks.append(walk)
            end = max(end, start + length - 1)
        scenes.frames[camera] = end
    return scenes


def _sprite(
    world: SyntheticWorld, walk: Walk, view: int, phase: float
) -> tuple[np.ndarray, np.ndarray]:
    """The person drawn at the native 128x64 size, and its coverage mask (0..1)."""
    if walk.pid > 0:
        ident = world.people[walk.pid]
    else:
        ident = world.random_identity(_rng(walk.seed, _K_VIDEO, 0, walk.camera, walk.track_id, 1))
    arm, leg = 0.4 * math.sin(phase), 0.35 * math.sin(phase)
    black = np.zeros((_H, _W, 3), np.uint8)
    white = np.full((_H, _W, 3), 255, np.uint8)
    mask = np.zeros((_H, _W), np.uint8)
    draw_person(black, mask, ident, view, _W / 2, _H - 5, 1.0, arm, leg)
    draw_person(white, mask, ident, view, _W / 2, _H - 5, 1.0, arm, leg)
    coverage = (black == white).all(axis=2).astype(np.float32)
    return black, coverage


def render_frame(
    world: SyntheticWorld, scenes: VideoScenes, camera: int, frame: int, seed: int
) -> tuple[np.ndarray, list[tuple[Walk, tuple[int, int, int, int]]]]:
    """One RGB frame of one camera and the ground-truth box (left, top, width, height, clipped
    to the frame) of every walker in it, far walkers drawn first."""
    height, width = SCENE_SIZE
    scene = world.cameras[camera]
    image = cv2.resize(scene.background, (width, height), interpolation=cv2.INTER_LINEAR)
    image = image.astype(np.float32)
    horizon = 0.42 * height
    present = [
        (walk, *walk.state(frame))
        for walk in scenes.walks
        if walk.camera == camera and walk.start <= frame < walk.start + walk.length
    ]
    boxes = []
    for walk, scale, centre, view, phase in sorted(present, key=lambda item: item[1]):
        sprite, coverage = _sprite(world, walk, view, phase)
        sprite_h, sprite_w = max(4, round(_H * scale)), max(2, round(_W * scale))
        small = cv2.resize(sprite, (sprite_w, sprite_h), interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(coverage, (sprite_w, sprite_h), interpolation=cv2.INTER_AREA)
        foot = horizon + (scale - FAR_SCALE) / (NEAR_SCALE - FAR_SCALE) * (height - 2 - horizon)
        top, left = round(foot - sprite_h), round(centre * width - sprite_w / 2)
        y0, x0 = max(0, top), max(0, left)
        y1, x1 = min(height, top + sprite_h), min(width, left + sprite_w)
        if y1 <= y0 or x1 <= x0:
            continue
        part = alpha[y0 - top : y1 - top, x0 - left : x1 - left, None]
        image[y0:y1, x0:x1] = (
            part * small[y0 - top : y1 - top, x0 - left : x1 - left]
            + (1 - part) * image[y0:y1, x0:x1]
        )
        rows, columns = np.nonzero(alpha[y0 - top : y1 - top, x0 - left : x1 - left] > 0.3)
        if rows.size:
            boxes.append(
                (
                    walk,
                    (
                        x0 + int(columns.min()),
                        y0 + int(rows.min()),
                        int(columns.max() - columns.min()) + 1,
                        int(rows.max() - rows.min()) + 1,
                    ),
                )
            )
    rng = _rng(seed, _K_VIDEO, 1, camera, frame)
    pole = int(_rng(seed, _K_VIDEO, 2, camera).integers(width // 5, 4 * width // 5))
    image[int(0.3 * height) :, pole : pole + width // 14] = 90.0  # a pillar in front of everyone
    result = np.clip(image, 0, 255).astype(np.uint8)
    result = cv2.LUT(result, scene.lut)
    if scene.blur > 0.3:
        result = cv2.GaussianBlur(result, (0, 0), scene.blur)
    noise = rng.normal(0.0, 3.0, result.shape)
    return np.clip(result + noise, 0, 255).astype(np.uint8), boxes


def _write_jpeg(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    if not ok:
        raise OSError(f"cannot encode {path}")
    path.write_bytes(data.tobytes())


def write_synthetic_video(
    out: str | Path,
    identities: int = 100,
    walkers: int = 20,
    cameras: int = 3,
    passers_by: int = 3,
    seed: int = 0,
    train_fraction: float = 0.5,
) -> str:
    """Write ``frames/<camera>/NNNNNN.jpg``, ``gt/<camera>.txt`` (MOT), ``tracks/<camera>/
    <track_id>/NNNNNN.jpg`` and ``identities.csv`` (camera, track_id, pid) under ``out``;
    return a one-line summary. Walkers are the first test identities of the world of
    ``rareid synth --identities IDENTITIES --seed SEED``."""
    train = max(1, round(identities * train_fraction))
    if not 1 <= walkers <= identities - train:
        raise ValueError(
            f"walkers: expected 1..{identities - train} (the test identities), got {walkers}"
        )
    if cameras < 2:
        raise ValueError(f"cameras: expected at least 2, got {cameras}")
    world = SyntheticWorld(
        identities=identities, seed=seed, cameras=max(cameras, 2), train_identities=train
    )
    scenes = plan_walks(
        world, list(range(train + 1, train + 1 + walkers)), cameras, passers_by, seed
    )
    root = Path(out)
    rows = []
    boxes_written = 0
    for camera in range(cameras):
        name = f"cam{camera + 1}"
        lines = []
        for frame in range(1, scenes.frames[camera] + 1):
            image, boxes = render_frame(world, scenes, camera, frame, seed)
            _write_jpeg(root / "frames" / name / f"{frame:06d}.jpg", image)
            for walk, (left, top, width, height) in boxes:
                lines.append(f"{frame},{walk.track_id},{left},{top},{width},{height},1,-1,-1,-1\n")
                crop = image[top : top + height, left : left + width]
                _write_jpeg(root / "tracks" / name / str(walk.track_id) / f"{frame:06d}.jpg", crop)
                boxes_written += 1
        (root / "gt").mkdir(parents=True, exist_ok=True)
        (root / "gt" / f"{name}.txt").write_text("".join(lines))
        rows += [
            (name, str(walk.track_id), walk.pid) for walk in scenes.walks if walk.camera == camera
        ]
    with open(root / "identities.csv", "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["camera", "track_id", "pid"])
        writer.writerows(rows)
    frames = sum(scenes.frames.values())
    return (
        f"synthetic video at {root}: {cameras} cameras, {frames} frames, {len(scenes.walks)} "
        f"tracklets ({walkers} walkers through every camera, {passers_by} passers-by per camera), "
        f"{boxes_written} boxes; seed {seed}"
    )


def hr_tracklet(
    world: SyntheticWorld, pid: int, camera: int, length: int, first_frame: int = 0
) -> list[np.ndarray]:
    """``length`` native 128x64 renders of ``pid`` in ``camera``: an HR tracklet for the
    ``mlr-video`` protocol (its frames are then degraded by a schedule)."""
    return [world.render(pid, camera, first_frame + step) for step in range(length)]
