"""What ``rareid serve`` searches with: a gallery index that is read-only while served and
reloaded when its file changes, one embedding backend, and the search of one uploaded crop
(its level from its size, its top-k with verdicts), each request on its own tensors."""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from rareid.deploy.gallery.index import GalleryIndex
    from rareid.deploy.model.backends import EmbeddingBackend
    from rareid.deploy.search.exact import Searcher


@dataclass(frozen=True)
class Snapshot:
    """One loaded version of the index file; a request keeps the snapshot it started with, so a
    reload in the middle of it never mixes two galleries in one answer."""

    index: GalleryIndex
    searcher: Searcher
    stamp: tuple[int, int, int]
    version: int
    reference_width: float
    position_of: dict[str, int]


def _stamp(path: Path) -> tuple[int, int, int]:
    """(inode, mtime, size): ``rareid index --add`` renames a new file over the old one."""
    stat = os.stat(path)
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


class Matcher:
    """Searches uploaded crops against the index at ``path`` with ``runtime``.

    The model runs one request at a time (``_model_lock``); decoding and answering run in
    parallel. The index is never written here; when its file changes it is loaded again and
    swapped in whole, unless the new file cannot be read or was embedded by another model (then
    the previous one keeps serving and one line says why).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        runtime: EmbeddingBackend,
        far: float | None,
        default_far: float,
    ) -> None:
        self.path = Path(path)
        self.runtime = runtime
        self.far = far
        self.default_far = default_far
        self._model_lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._refused: tuple[int, int, int] | None = None
        self.sha256: str | None = None
        self.snapshot = self._load(_stamp(self.path), 1)
        self.sha256 = self.snapshot.index.checkpoint_sha256

    def _load(self, stamp: tuple[int, int, int], version: int) -> Snapshot:
        from rareid.deploy.gallery.index import GalleryIndex
        from rareid.deploy.search.exact import Searcher

        index = GalleryIndex.load(self.path)
        index.check_model(self.runtime)
        if self.sha256 is not None and index.checkpoint_sha256 != self.sha256:
            raise ValueError("embedded by another checkpoint than the one being served")
        if len(index) == 0:
            raise ValueError(f"{str(self.path)!r} holds no image")
        return Snapshot(
            index=index,
            searcher=Searcher(index),
            stamp=stamp,
            version=version,
            reference_width=float(np.median(index.sizes[:, 1])),
            position_of={name: position for position, name in enumerate(index.paths)},
        )

    def current(self) -> Snapshot:
        """The index as its file is now: reloaded when the file changed since the last load."""
        from rareid.deploy.gallery.index import GalleryIndexError

        try:
            stamp = _stamp(self.path)
        except OSError:
            return self.snapshot  # moved away for a moment: keep serving what was loaded
        if stamp in (self.snapshot.stamp, self._refused):
            return self.snapshot
        with self._reload_lock:
            if stamp not in (self.snapshot.stamp, self._refused):
                try:
                    self.snapshot = self._load(stamp, self.snapshot.version + 1)
                    print(
                        f"rareid serve: reloaded {self.path} ({len(self.snapshot.index)} images)",
                        file=sys.stderr,
                    )
                except (GalleryIndexError, ValueError, OSError) as error:
                    self._refused = stamp
                    print(
                        f"rareid serve: kept the previous index: cannot use the changed "
                        f"{self.path}: {error}",
                        file=sys.stderr,
                    )
        return self.snapshot

    def far_of(self, snapshot: Snapshot) -> float:
        """The verdicts' FAR: the one asked for, else the per-search one of the calibration now
        in the index (``rareid calibrate`` while serving changes it), else ``default_far``."""
        if self.far is not None:
            return self.far
        target = (snapshot.index.calibration or {}).get("far_per_search")
        return float(target["pair_far"]) if target else self.default_far

    def search(self, image: np.ndarray, name: str, top_k: int) -> dict[str, Any]:
        """The answer of ``/api/search`` for one RGB crop: the query's size, rate and level,
        and its ``top_k`` matches with distance, threshold and verdict."""
        import torch

        from rareid.deploy.crops import check_crop
        from rareid.deploy.gallery.staleness import stale_files
        from rareid.deploy.model.checks import check_finite_embeddings
        from rareid.deploy.verify.verdicts import level_threshold, verdict
        from rareid.levels import query_level

        snapshot = self.current()
        index = snapshot.index
        height, width = (int(side) for side in image.shape[:2])
        rate, level = query_level(
            height,
            index.rates,
            index.reference_height,
            index.level_policy,
            None,
            width,
            snapshot.reference_width,
        )
        levels = torch.tensor([level], dtype=torch.long)
        tensor = index.preprocess([image])
        with self._model_lock:
            embedding = self.runtime.embed(tensor, levels)
            check_finite_embeddings(embedding, "the query embedding")
            found = snapshot.searcher.search(embedding, levels, top_k)
        far = self.far_of(snapshot)
        threshold, reason = level_threshold(index.calibration, level, far)
        positions = found.indices[0].tolist()
        stale = stale_files(index, positions)
        matches = []
        for rank, (position, distance) in enumerate(
            zip(positions, found.distances[0].tolist(), strict=True), start=1
        ):
            gallery = index.paths[position]
            link = "/api/gallery?name=" + _quote(gallery)
            matches.append(
                {
                    "rank": rank,
                    "gallery": gallery,
                    "distance": round(float(distance), 6),
                    "threshold": None if threshold is None else round(threshold, 6),
                    "verdict": verdict(float(distance), threshold),
                    "verdict_reason": reason,
                    "gallery_status": stale.get(position, "ok"),
                    "thumb": link + "&size=thumb",
                    "full": link,
                }
            )
        return {
            "query": {
                "name": name,
                "height": height,
                "width": width,
                "rate": round(rate, 4),
                "level": level,
                "flags": str(check_crop(height, width)),
            },
            "far": far,
            "index": {"path": str(self.path), "images": len(index), "version": snapshot.version},
            "matches": matches,
        }


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")
