"""Gallery files decoded and preprocessed in DataLoader workers, for the torch gallery index
(:mod:`~rareid.deploy.gallery.files` decodes one file without torch)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from rareid.deploy.gallery.files import decode_gallery_file
from rareid.deploy.model.inference import Preprocess


class GalleryFiles(torch.utils.data.Dataset):
    """Gallery files decoded and preprocessed (in DataLoader workers when there are any)."""

    def __init__(self, todo: Sequence[tuple[str, Path]], preprocess: Preprocess) -> None:
        self.todo = list(todo)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.todo)

    def __getitem__(self, position: int) -> dict[str, Any]:
        item = decode_gallery_file(*self.todo[position])
        if "rgb" in item:
            item["image"] = self.preprocess.image(item.pop("rgb"))
        return item


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
