"""Gallery files that changed since they were indexed: a match on a deleted file, or on a file
replaced by another picture, is a match on an embedding of content that is no longer there."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rareid.deploy.gallery.index import GalleryIndex


def stale_files(index: GalleryIndex, positions: Iterable[int]) -> dict[int, str]:
    """``{position: "deleted" | "changed"}`` for the indexed files among ``positions`` whose
    file is gone or whose size or modification time differ from the ones indexed."""
    stale: dict[int, str] = {}
    for position in sorted(set(positions)):
        try:
            stat = os.stat(index.absolute_path(position))
        except OSError:
            stale[position] = "deleted"
            continue
        size, mtime_ns = (int(value) for value in index.stats[position])
        if (int(stat.st_size), int(stat.st_mtime_ns)) != (size, mtime_ns):
            stale[position] = "changed"
    return stale


def describe_stale(index: GalleryIndex, stale: dict[int, str], named: int = 5) -> str:
    """One line naming the stale matches and what to do."""
    deleted = [index.paths[p] for p, status in stale.items() if status == "deleted"]
    changed = [index.paths[p] for p, status in stale.items() if status == "changed"]
    parts = []
    for label, names in (("deleted", deleted), ("changed", changed)):
        if names:
            more = f" and {len(names) - named} more" if len(names) > named else ""
            parts.append(f"{len(names)} {label} ({', '.join(names[:named])}{more})")
    return (
        f"stale gallery: {len(stale)} matched file(s) differ from what was indexed: "
        f"{'; '.join(parts)}; their rows say so (gallery_status); bring the index up to date "
        "with `rareid index --add`"
    )
