"""The content of an index file as NumPy arrays (:class:`IndexRecord`): what the file holds and
how it is written and read, with no torch. :class:`~rareid.deploy.gallery.index.GalleryIndex`
is this record in tensors, for training-side code; a torch-free runtime builds
(:func:`build_record`) and searches a record directly.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rareid.deploy.crops import MIN_CROP_HEIGHT, MIN_CROP_WIDTH, check_crop
from rareid.deploy.gallery.files import (
    FlaggedCrop,
    IndexChanges,
    SkippedImage,
    decode_gallery_file,
)
from rareid.deploy.gallery.index_file import (
    FORMAT_VERSION,
    GalleryIndexError,
    read_index_file,
    write_index_file,
)
from rareid.deploy.model.arrays import ArrayPreprocess
from rareid.deploy.model.backends import as_backend

if TYPE_CHECKING:
    from rareid.deploy.model.backends import EmbeddingBackend


class IndexFacts:
    """What an index says about its gallery whatever holds its vectors (arrays or tensors)."""

    paths: list[str]
    sizes: np.ndarray
    rates: list[float]
    split_sizes: list[int]
    root: str

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_levels(self) -> int:
        return len(self.rates)

    @property
    def reference_height(self) -> float:
        """Median native height of the gallery images: the height of a rate-1 query."""
        if len(self) == 0:
            raise GalleryIndexError("the index is empty: no reference height")
        return float(np.median(self.sizes[:, 0]))

    def absolute_path(self, position: int) -> Path:
        return Path(self.root) / self.paths[position]

    def check_model(self, model: Any) -> None:
        """Refuse a model whose rates or sub-vectors differ from the ones of the index (a runtime
        that does not state them is taken at its word)."""
        backend = as_backend(model)
        rates, sizes = backend.rates, backend.split_sizes
        if rates is None or sizes is None:
            return
        if rates != self.rates or sizes != self.split_sizes:
            raise GalleryIndexError(
                f"the model (rates {rates}, sub-vectors {sizes}) is not the one of the index "
                f"(rates {self.rates}, sub-vectors {self.split_sizes})"
            )

    def flagged_crops(
        self, min_height: int = MIN_CROP_HEIGHT, min_width: int = MIN_CROP_WIDTH
    ) -> list[FlaggedCrop]:
        """The indexed images too small or not of a person's shape, by the rule of the query
        crops (:func:`~rareid.deploy.crops.check_crop`), sorted by name."""
        flagged = []
        for name, (height, width) in zip(self.paths, self.sizes.tolist(), strict=True):
            check = check_crop(int(height), int(width), min_height, min_width)
            if check.flags:
                flagged.append(FlaggedCrop(name, str(check)))
        return sorted(flagged, key=lambda item: item.path)


@dataclass
class IndexRecord(IndexFacts):
    """An index file's arrays and metadata (see :mod:`rareid.deploy.gallery.index`)."""

    embeddings: np.ndarray  # (N, d) float32, zero-padded
    paths: list[str]
    sizes: np.ndarray  # (N, 2) int64 native (height, width)
    levels: np.ndarray  # (N,) int64
    root: str
    rates: list[float]
    split_sizes: list[int]
    metric: str
    preprocess: ArrayPreprocess
    checkpoint_sha256: str = ""
    checkpoint_path: str = ""
    level_policy: str = "nearest"
    calibration: dict[str, Any] | None = None
    stats: np.ndarray | None = None
    storage_dtype: str = "float32"
    #: The approximate index's description and arrays (``ann_level1`` ...), if it has one.
    ann_meta: dict[str, Any] | None = None
    ann_arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.stats is None:
            self.stats = np.full((len(self), 2), -1, dtype=np.int64)

    @property
    def ann(self) -> dict[str, Any] | None:
        """The approximate index's description (what ``results.json`` reports), if any."""
        return self.ann_meta

    def meta(self) -> dict[str, Any]:
        return {
            "format": "rareid-gallery-index",
            "version": FORMAT_VERSION,
            "root": self.root,
            "rates": self.rates,
            "split_sizes": self.split_sizes,
            "metric": self.metric,
            "img_size": list(self.preprocess.img_size),
            "mean": list(self.preprocess.mean),
            "std": list(self.preprocess.std),
            "checkpoint_sha256": self.checkpoint_sha256,
            "checkpoint_path": self.checkpoint_path,
            "level_policy": self.level_policy,
            "calibration": self.calibration,
            "storage_dtype": self.storage_dtype,
            "ann": self.ann_meta,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the index atomically (a temporary file in the same folder, then a rename)."""
        arrays = {
            "embeddings": np.asarray(self.embeddings, dtype=np.float32).astype(self.storage_dtype),
            "stats": np.asarray(self.stats, dtype=np.int64).reshape(-1, 2),
            "sizes": np.asarray(self.sizes, dtype=np.int64).reshape(-1, 2),
            "levels": np.asarray(self.levels, dtype=np.int64).reshape(-1),
            "paths": np.asarray(self.paths, dtype=str),
            "meta": np.asarray(json.dumps(self.meta())),
            **self.ann_arrays,
        }
        return write_index_file(path, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> IndexRecord:
        """Read an index file (no pickle involved); a damaged file is one GalleryIndexError."""
        return read_index_file(path, cls.from_file)

    @classmethod
    def from_file(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> IndexRecord:
        stats = arrays.get("stats")
        return cls(
            embeddings=arrays["embeddings"].astype(np.float32),
            paths=[str(p) for p in arrays["paths"].tolist()],
            sizes=arrays["sizes"].astype(np.int64).reshape(-1, 2),
            levels=arrays["levels"].astype(np.int64).reshape(-1),
            root=meta["root"],
            rates=[float(r) for r in meta["rates"]],
            split_sizes=[int(s) for s in meta["split_sizes"]],
            metric=meta["metric"],
            preprocess=ArrayPreprocess(
                tuple(meta["img_size"]), tuple(meta["mean"]), tuple(meta["std"])
            ),
            checkpoint_sha256=meta["checkpoint_sha256"],
            checkpoint_path=meta["checkpoint_path"],
            level_policy=meta.get("level_policy", "nearest"),
            calibration=meta.get("calibration"),
            stats=None if stats is None else stats.astype(np.int64).reshape(-1, 2),
            storage_dtype=meta.get("storage_dtype", "float32"),
            ann_meta=meta.get("ann") or None,
            ann_arrays={k: v for k, v in arrays.items() if k.startswith("ann_")},
        )

    @classmethod
    def for_runtime(
        cls, backend: EmbeddingBackend, root: str | os.PathLike, metric: str | None = None
    ) -> IndexRecord:
        """An empty record for an exported model: rates, sub-vectors, preprocessing and
        checkpoint hash come from the file's metadata."""
        meta = getattr(backend, "metadata", {})
        needed = ("rareid_rates", "rareid_split_sizes", "rareid_img_size", "rareid_mean")
        missing = [key for key in needed if key not in meta]
        if missing:
            raise GalleryIndexError(
                f"the ONNX file lacks rareid metadata ({', '.join(missing)}): export it with "
                "`rareid export`"
            )
        metric = meta.get("rareid_distance") or metric
        if metric not in ("euclidean", "cosine"):
            raise GalleryIndexError(
                "--metric: the ONNX file does not record the model's distance: pass --metric "
                "euclidean or cosine (the checkpoint's `distance` option), or --ckpt"
            )
        split_sizes = [int(v) for v in json.loads(meta["rareid_split_sizes"])]
        return cls(
            embeddings=np.empty((0, sum(split_sizes)), dtype=np.float32),
            paths=[],
            sizes=np.empty((0, 2), dtype=np.int64),
            levels=np.empty(0, dtype=np.int64),
            root=str(Path(root).resolve()),
            rates=[float(v) for v in json.loads(meta["rareid_rates"])],
            split_sizes=split_sizes,
            metric=metric,
            preprocess=ArrayPreprocess(
                tuple(int(v) for v in json.loads(meta["rareid_img_size"])),
                tuple(float(v) for v in json.loads(meta["rareid_mean"])),
                tuple(float(v) for v in json.loads(meta["rareid_std"])),
            ),
            checkpoint_sha256=meta.get("rareid_checkpoint_sha256", ""),
            level_policy=meta.get("rareid_level_policy", "nearest"),
        )


def build_record(
    record: IndexRecord,
    backend: EmbeddingBackend,
    paths: Sequence[str | os.PathLike],
    batch_size: int = 64,
    progress: bool = False,
) -> IndexChanges:
    """Embed ``paths`` (a gallery folder's images, under ``record.root``) into the empty
    ``record`` at the HR level, in this process and without torch; unreadable files are
    named in the changes, a NaN embedding refuses the whole index."""
    from tqdm.auto import tqdm

    from rareid.deploy.gallery.files import plan_changes

    changes = plan_changes(paths, [], record.stats, record.root, drop_missing=False)
    level = record.num_levels
    vectors, names, sizes, stats = [], [], [], []
    bar = tqdm(total=len(changes.todo), desc="embedding gallery", unit="img", disable=not progress)
    for start in range(0, len(changes.todo), batch_size):
        items = [decode_gallery_file(*todo) for todo in changes.todo[start : start + batch_size]]
        good = [item for item in items if "failed" not in item]
        for item in items:
            if "failed" in item:
                changes.skipped.append(SkippedImage(item["path"], item["failed"]))
                changes.added -= 1
        if good:
            batch = record.preprocess.arrays([item["rgb"] for item in good])
            embedded = backend.embed_arrays(batch, np.full(len(good), level, dtype=np.int64))
            bad = ~np.isfinite(embedded).all(1)
            if bad.any():
                first = [good[i]["path"] for i in np.flatnonzero(bad)[:3]]
                raise GalleryIndexError(
                    f"the model gives NaN or infinite embeddings for {int(bad.sum())} "
                    f"image(s), e.g. {', '.join(first)}: is the model trained? nothing written"
                )
            vectors.append(embedded)
            names += [item["name"] for item in good]
            sizes += [item["size"] for item in good]
            stats += [item["stat"] for item in good]
        bar.update(len(items))
    bar.close()
    if vectors:
        record.embeddings = np.concatenate(vectors).astype(np.float32)
        record.paths = names
        record.sizes = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
        record.stats = np.asarray(stats, dtype=np.int64).reshape(-1, 2)
        record.levels = np.full(len(names), level, dtype=np.int64)
    changes.flagged = record.flagged_crops()
    changes.total = len(record)
    return changes
