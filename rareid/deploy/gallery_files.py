"""The gallery files of an index: a torch Dataset that decodes and preprocesses them in
DataLoader workers (unreadable or truncated files listed instead of passed on), and the
records of what an index update did with them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rareid.data.readers.base import header_problem
from rareid.deploy.inference import Preprocess


@dataclass
class SkippedImage:
    """An image that could not be read, and why."""

    path: str
    reason: str


@dataclass
class IndexChanges:
    """What an update of an index did (and, before it runs, what it will do)."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    total: int = 0  # images in the index afterwards
    skipped: list[SkippedImage] = field(default_factory=list)
    todo: list[tuple[str, Path]] = field(default_factory=list, repr=False)
    drop: list[int] = field(default_factory=list, repr=False)
    changed: set[str] = field(default_factory=set, repr=False)

    def describe(self) -> str:
        return (
            f"{self.total} images ({self.added} added, {self.updated} changed and re-embedded, "
            f"{self.removed} deleted from the gallery and dropped, {self.unchanged} already "
            f"indexed, {len(self.skipped)} unreadable skipped)"
        )


class GalleryFiles(torch.utils.data.Dataset):
    """Gallery files decoded and preprocessed (in DataLoader workers when there are any)."""

    def __init__(self, todo: Sequence[tuple[str, Path]], preprocess: Preprocess) -> None:
        self.todo = list(todo)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.todo)

    def __getitem__(self, position: int) -> dict[str, Any]:
        import cv2

        relative, path = self.todo[position]
        # A truncated JPEG decodes with only a libjpeg warning: check its header and end first.
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
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        return {
            "path": str(path),
            "name": relative,
            "image": self.preprocess.image(rgb),
            "size": image.shape[:2],
            "stat": (int(stat.st_size), int(stat.st_mtime_ns)),
        }


def collate_gallery(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch the readable images; list the unreadable ones."""
    good = [item for item in items if "failed" not in item]
    return {
        "images": torch.stack([item["image"] for item in good]) if good else None,
        "names": [item["name"] for item in good],
        "paths": [item["path"] for item in good],
        "sizes": [item["size"] for item in good],
        "stats": [item["stat"] for item in good],
        "failed": [
            (item["path"], item["failed"], item["name"]) for item in items if "failed" in item
        ],
    }
