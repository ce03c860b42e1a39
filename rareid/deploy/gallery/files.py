"""The gallery files of an index: decoding one (unreadable or truncated files named instead of
passed on; :mod:`~rareid.deploy.gallery.loader` runs it in DataLoader workers), and the records
of what an index update does with them (which files are new, changed or gone). No torch."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rareid.data.readers.base import header_problem


@dataclass
class SkippedImage:
    """An image that could not be read, and why."""

    path: str
    reason: str


@dataclass
class FlaggedCrop:
    """An indexed image whose size or shape is not a person's (the query crops' rule,
    :func:`rareid.deploy.crops.check_crop`): kept in the index, but named."""

    path: str
    flags: str


#: Flagged crops named in the summary line of an update (the rest are counted).
NAMED_FLAGGED = 20


@dataclass
class IndexChanges:
    """What an update of an index did (and, before it runs, what it will do)."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    total: int = 0  # images in the index afterwards
    skipped: list[SkippedImage] = field(default_factory=list)
    flagged: list[FlaggedCrop] = field(default_factory=list)  # of the index afterwards
    todo: list[tuple[str, Path]] = field(default_factory=list, repr=False)
    drop: list[int] = field(default_factory=list, repr=False)
    changed: set[str] = field(default_factory=set, repr=False)

    def describe(self) -> str:
        """One line: the counts, then the flagged crops by name (the first NAMED_FLAGGED)."""
        line = (
            f"{self.total} images ({self.added} added, {self.updated} changed and re-embedded, "
            f"{self.removed} deleted from the gallery and dropped, {self.unchanged} already "
            f"indexed, {len(self.skipped)} unreadable skipped, {len(self.flagged)} flagged crops)"
        )
        if not self.flagged:
            return line
        named = ", ".join(f"{item.path} [{item.flags}]" for item in self.flagged[:NAMED_FLAGGED])
        more = len(self.flagged) - NAMED_FLAGGED
        return f"{line}; flagged, indexed all the same: {named}" + (
            f" and {more} more" if more > 0 else ""
        )


def plan_changes(
    paths: Sequence[str | os.PathLike],
    indexed: Sequence[str],
    stats: np.ndarray,
    root: str,
    drop_missing: bool,
) -> IndexChanges:
    """Which of ``paths`` are new, changed (size or modification time differ from ``stats``)
    or unchanged against the ``indexed`` names (relative to ``root``), and which rows go."""
    position_of = {name: position for position, name in enumerate(indexed)}
    changes = IndexChanges()
    seen: set[str] = set()
    for path in paths:
        relative = Path(os.path.relpath(Path(path).resolve(), root)).as_posix()
        if relative in seen:
            continue
        seen.add(relative)
        position = position_of.get(relative)
        try:
            stat = Path(path).stat()
            current = (int(stat.st_size), int(stat.st_mtime_ns))
        except OSError:
            current = (-1, -1)
        if position is None:
            changes.todo.append((relative, Path(path)))
            changes.added += 1
        elif tuple(int(v) for v in stats[position]) != current or current[0] < 0:
            changes.todo.append((relative, Path(path)))
            changes.changed.add(relative)
            changes.drop.append(position)
            changes.updated += 1
        else:
            changes.unchanged += 1
    if drop_missing:
        gone = [position for name, position in position_of.items() if name not in seen]
        changes.drop += gone
        changes.removed = len(gone)
    return changes


def decode_gallery_file(relative: str, path: Path) -> dict[str, Any]:
    """One gallery file decoded to uint8 RGB with its size and file stats, or the reason it
    cannot be (``failed``): a truncated JPEG decodes with only a libjpeg warning, so its
    header and end are checked first."""
    import cv2

    problem = header_problem(str(path))
    if problem is not None:
        return {"path": str(path), "name": relative, "failed": problem}
    try:
        stat = path.stat()
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    except OSError:
        image = None
    if image is None:
        return {"path": str(path), "name": relative, "failed": "unreadable or not an image"}
    return {
        "path": str(path),
        "name": relative,
        "rgb": cv2.cvtColor(image, cv2.COLOR_BGR2RGB),
        "size": image.shape[:2],
        "stat": (int(stat.st_size), int(stat.st_mtime_ns)),
    }
