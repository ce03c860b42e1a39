"""What a tracklet is in memory, and cutting its crops out of whole frames.

A crop keeps its native size (the tracker's box, clipped to the frame): its height is the
resolution the level estimator reads, so frames are never resized here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np


class TrackInputError(ValueError):
    """Tracklet input that cannot be used; the message is one line naming the file (and line)."""


@dataclass
class Tracklet:
    """One person's crops in one camera, in frame order.

    ``frames`` are 1-based frame numbers (``-1`` when unknown, e.g. a crop folder whose file
    names carry none); ``boxes`` are the clipped boxes ``(left, top, width, height)`` in the
    frame (``-1`` rows when the crops came as files); ``sources`` name where each crop came
    from, for reports.
    """

    camera: str
    track_id: str
    crops: list[np.ndarray] = field(default_factory=list)  # RGB uint8, native size
    frames: list[int] = field(default_factory=list)
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.crops)

    def add(
        self,
        crop: np.ndarray,
        frame: int = -1,
        box: tuple[int, int, int, int] = (-1, -1, -1, -1),
        source: str = "",
    ) -> None:
        self.crops.append(crop)
        self.frames.append(int(frame))
        self.boxes.append(tuple(int(value) for value in box))  # type: ignore[arg-type]
        self.sources.append(source)

    @property
    def key(self) -> tuple[str, str]:
        return self.camera, self.track_id

    def span(self) -> tuple[int, int] | None:
        """First and last frame number, or ``None`` when frame numbers are unknown."""
        known = [frame for frame in self.frames if frame >= 0]
        return (min(known), max(known)) if known else None


@dataclass
class InputReport:
    """What reading tracklets had to clip, skip or could not read: counted and named, so that
    nothing is dropped silently."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def note(self, kind: str, where: str, keep: int = 3) -> None:
        self.counts[kind] += 1
        kept = self.examples.setdefault(kind, [])
        if len(kept) < keep:
            kept.append(where)

    def merge(self, other: InputReport) -> None:
        for kind, count in other.counts.items():
            self.counts[kind] += count
            kept = self.examples.setdefault(kind, [])
            kept.extend(other.examples.get(kind, [])[: max(0, 3 - len(kept))])

    def lines(self) -> list[str]:
        """One line per kind of problem with its count and the first places it happened."""
        return [
            f"{count} {kind} (e.g. {'; '.join(self.examples.get(kind, []))})"
            for kind, count in sorted(self.counts.items())
        ]


def clip_box(
    box: tuple[float, float, float, float], frame_height: int, frame_width: int
) -> tuple[tuple[int, int, int, int] | None, bool]:
    """``(left, top, width, height)`` clipped to the frame in whole pixels, and whether clipping
    changed it; ``None`` when nothing of the box is inside the frame."""
    left, top, width, height = box
    x0, y0 = max(0, round(left)), max(0, round(top))
    x1 = min(frame_width, round(left + width))
    y1 = min(frame_height, round(top + height))
    if x1 <= x0 or y1 <= y0:
        return None, True
    clipped = (x0, y0, x1 - x0, y1 - y0)
    original = (round(left), round(top), round(width), round(height))
    return clipped, clipped != original


def cut_crops(
    frame: np.ndarray,
    frame_number: int,
    boxes: Iterable[tuple[str, tuple[float, float, float, float], str]],
    tracks: dict[str, Tracklet],
    camera: str,
    report: InputReport,
) -> None:
    """Cut every ``(track_id, box, where)`` of one RGB frame into its tracklet in ``tracks``.

    A box partly outside the frame is clipped and counted; one wholly outside is skipped and
    counted (``where`` names the file and line it came from).
    """
    height, width = frame.shape[:2]
    for track_id, box, where in boxes:
        clipped, changed = clip_box(box, height, width)
        if clipped is None:
            report.note("boxes outside the frame skipped", where)
            continue
        if changed:
            report.note("boxes clipped to the frame", where)
        left, top, box_width, box_height = clipped
        crop = np.ascontiguousarray(frame[top : top + box_height, left : left + box_width])
        track = tracks.setdefault(track_id, Tracklet(camera, track_id))
        track.add(crop, frame_number, clipped, where)
