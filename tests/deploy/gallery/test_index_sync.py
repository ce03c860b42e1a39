"""GalleryIndex.update on an embedding backend that needs no model: new, changed, deleted and
unreadable files are each counted, rows follow the files, and the file round-trips."""

from __future__ import annotations

import os
import time
from typing import ClassVar

import cv2
import numpy as np
import torch

from rareid.deploy.crops import check_crop
from rareid.deploy.gallery.index import GalleryIndex
from rareid.deploy.model.backends import EmbeddingBackend
from rareid.deploy.model.inference import Preprocess, list_images


class MeanColour(EmbeddingBackend):
    """Embeds a crop as its mean colour, repeated: enough to tell files apart."""

    rates: ClassVar[list[float]] = [1.0, 2.0]
    split_sizes: ClassVar[list[int]] = [3, 3]

    def embed(self, images, levels):
        return images.mean((2, 3)).repeat(1, 2)


def write(path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((16, 8, 3), value, dtype=np.uint8))


def empty_index(root) -> GalleryIndex:
    return GalleryIndex(
        embeddings=torch.empty(0, 6),
        paths=[],
        sizes=np.empty((0, 2), dtype=np.int64),
        levels=torch.empty(0, dtype=torch.long),
        root=str(root.resolve()),
        rates=[1.0, 2.0],
        split_sizes=[3, 3],
        metric="euclidean",
        preprocess=Preprocess((16, 8)),
    )


def test_update_counts_new_changed_deleted_and_unreadable_files(tmp_path) -> None:
    root = tmp_path / "g"
    for number in range(4):
        write(root / f"p{number}.png", 40 * number)
    index = empty_index(root)
    first = index.update(MeanColour(), list_images(root), num_workers=0)
    assert (first.added, first.updated, first.removed, first.unchanged) == (4, 0, 0, 0)

    (root / "p0.png").unlink()
    write(root / "p1.png", 250)
    later = time.time() + 5
    os.utime(root / "p1.png", (later, later))
    write(root / "new.png", 100)
    (root / "bad.png").write_bytes(b"not a png")
    second = index.update(MeanColour(), list_images(root), num_workers=0)
    assert (second.added, second.updated, second.removed, second.unchanged) == (1, 1, 1, 2)
    assert [item.path for item in second.skipped] == [str(root / "bad.png")]
    assert sorted(index.paths) == ["new.png", "p1.png", "p2.png", "p3.png"]
    row = index.paths.index("p1.png")
    assert index.embeddings[row, 0].item() > 1.0  # the new picture (250), not the old (40)

    saved = GalleryIndex.load(index.save(tmp_path / "i.npz"))
    third = saved.update(MeanColour(), list_images(root), num_workers=0)
    assert (third.added, third.updated, third.removed, third.unchanged) == (0, 0, 0, 4)


def test_degenerate_gallery_crops_are_indexed_named_and_counted(tmp_path) -> None:
    root = tmp_path / "g"
    write(root / "person.png", 40)  # 16x8: a person's shape, at the minimum size
    root.mkdir(exist_ok=True)
    cv2.imwrite(str(root / "tiny.png"), np.full((10, 5, 3), 90, dtype=np.uint8))
    cv2.imwrite(str(root / "sideways.png"), np.full((20, 60, 3), 150, dtype=np.uint8))
    index = empty_index(root)
    changes = index.update(MeanColour(), list_images(root), num_workers=0)
    assert sorted(index.paths) == ["person.png", "sideways.png", "tiny.png"]  # all indexed
    flagged = {item.path: item.flags for item in changes.flagged}
    assert sorted(flagged) == ["sideways.png", "tiny.png"]
    # the rule and the words of the query crops
    assert flagged["tiny.png"] == str(check_crop(10, 5))
    assert flagged["sideways.png"] == str(check_crop(20, 60))
    line = changes.describe()
    assert "\n" not in line and "2 flagged crops" in line
    assert "tiny.png [tiny (10x5 px" in line and "sideways.png [aspect 0.33" in line

    # the summary of a later update counts the flagged crops the index holds, old ones too
    saved = GalleryIndex.load(index.save(tmp_path / "i.npz"))
    again = saved.update(MeanColour(), list_images(root), num_workers=0)
    assert again.unchanged == 3 and [item.path for item in again.flagged] == [
        "sideways.png",
        "tiny.png",
    ]
    assert "2 flagged crops" in again.describe()
