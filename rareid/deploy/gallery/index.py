"""``GalleryIndex``: the embeddings of a folder of HR gallery crops, saved in one file.

The file is a plain ``.npz`` archive (NumPy arrays and one JSON string) that loads with
``allow_pickle=False``: opening an index someone sent you runs no code. It holds the zero-padded
HR (level ``m``) embeddings, the image paths relative to the gallery folder, the native image
sizes (their median height is the reference a query's rate is estimated against), the levels,
the SHA-256 of the checkpoint that embedded them and the model's rates and sub-vector sizes, so
that a query is embedded by the same model and compared on the right prefix. One index serves
every query level: a level-``k`` query is ranked on the first ``k`` sub-vectors of the same
stored vectors (Eq. 2), no per-level copy is made.

``rareid index`` (:func:`rareid.commands.index.main`) is a thin command-line wrapper
around this class.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from rareid.deploy.gallery.files import (
    IndexChanges,
    SkippedImage,
    plan_changes,
)
from rareid.deploy.gallery.index_file import GalleryIndexError
from rareid.deploy.gallery.loader import GalleryFiles, collate_gallery
from rareid.deploy.gallery.record import IndexFacts, IndexRecord
from rareid.deploy.model.backends import EmbeddingBackend, as_backend
from rareid.deploy.model.inference import (
    Preprocess,
    checkpoint_facts,
)

if TYPE_CHECKING:
    from rareid.deploy.gallery.ann import AnnIndex
    from rareid.models.module import RAReIDModule

Metric = Literal["euclidean", "cosine"]
StorageDtype = Literal["float32", "float16"]


@dataclass
class GalleryIndex(IndexFacts):
    """HR gallery embeddings with their file names, sizes and the model that made them.

    Examples::

        model, preprocess = load_model("last.ckpt")
        paths = list_images("gallery/")
        index = GalleryIndex.build(model, paths, preprocess=preprocess, checkpoint_path="last.ckpt")
        index.save("gallery.npz")
        index = GalleryIndex.load("gallery.npz")  # no pickle: opening it runs no code
    """

    embeddings: torch.Tensor  # (N, d) float32, zero-padded, on the CPU
    paths: list[str]  # relative to ``root`` (POSIX separators)
    sizes: np.ndarray  # (N, 2) int: native (height, width)
    levels: torch.Tensor  # (N,) int64, 1..m
    root: str
    rates: list[float]
    split_sizes: list[int]
    metric: Metric
    preprocess: Preprocess
    checkpoint_sha256: str = ""
    checkpoint_path: str = ""
    level_policy: str = "nearest"  # how a query's estimated rate becomes a level (the datamodule's)
    calibration: dict[str, Any] | None = None
    skipped: list[SkippedImage] = field(default_factory=list)
    #: (N, 2) int64 file size and modification time (ns) when embedded; -1: unknown (format 1).
    stats: np.ndarray | None = None
    #: How the embeddings are stored in the file (in memory they are always float32).
    storage_dtype: StorageDtype = "float32"
    #: Approximate-search index over the embeddings (:mod:`rareid.deploy.gallery.ann`), if built.
    ann: AnnIndex | None = None

    def __post_init__(self) -> None:
        if self.stats is None:
            self.stats = np.full((len(self), 2), -1, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    # ------------------------------------------------------------------ building
    @classmethod
    def empty(
        cls,
        model: RAReIDModule,
        root: str | os.PathLike,
        preprocess: Preprocess | None = None,
        checkpoint_path: str | os.PathLike | None = None,
    ) -> GalleryIndex:
        """An index with no images yet, bound to ``model`` (and its checkpoint, if given)."""
        digest, level_policy = "", "nearest"
        if checkpoint_path:
            digest, level_policy, _ = checkpoint_facts(checkpoint_path)
        return cls(
            embeddings=torch.empty(0, model.embedding_dim),
            paths=[],
            sizes=np.empty((0, 2), dtype=np.int64),
            levels=torch.empty(0, dtype=torch.long),
            root=str(Path(root).resolve()),
            rates=[float(r) for r in model.rates],
            split_sizes=[int(s) for s in model.distance_split_sizes],
            metric=model.hparams.distance,
            preprocess=preprocess or Preprocess.from_model(model),
            checkpoint_sha256=digest,
            checkpoint_path=str(Path(checkpoint_path).resolve()) if checkpoint_path else "",
            level_policy=level_policy,
        )

    @classmethod
    def from_onnx(
        cls,
        backend: EmbeddingBackend,
        root: str | os.PathLike,
        metric: Metric | None = None,
    ) -> GalleryIndex:
        """An empty index for an ONNX model (:class:`~rareid.deploy.model.backend_onnx.OnnxBackend`):
        rates, sub-vectors, preprocessing and checkpoint hash come from the file's metadata."""
        return cls.from_record(IndexRecord.for_runtime(backend, root, metric))

    @classmethod
    def build(
        cls,
        model: RAReIDModule,
        paths: Sequence[str | os.PathLike],
        root: str | os.PathLike | None = None,
        preprocess: Preprocess | None = None,
        checkpoint_path: str | os.PathLike | None = None,
        batch_size: int = 64,
        progress: bool = False,
    ) -> GalleryIndex:
        """Embed ``paths`` at the HR level. ``root`` (default: their common folder) makes the
        stored paths relative. Unreadable images land in ``index.skipped``."""
        paths = [Path(p) for p in paths]
        missing = [str(path) for path in paths if not path.is_file()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} of the {len(paths)} gallery file(s) do not exist (e.g. "
                f"{', '.join(repr(name) for name in missing[:3])}): nothing was indexed; pass "
                "existing files (list_images(folder) lists a folder's images)"
            )
        if root is None:
            root = os.path.commonpath([str(p.resolve().parent) for p in paths]) if paths else "."
        index = cls.empty(model, root, preprocess, checkpoint_path)
        index.add(model, paths, batch_size=batch_size, progress=progress)
        return index

    def add(
        self,
        model: RAReIDModule | EmbeddingBackend,
        paths: Sequence[str | os.PathLike],
        batch_size: int = 64,
        progress: bool = False,
        num_workers: int = 0,
    ) -> tuple[int, int, list[SkippedImage]]:
        """Embed and append the images of ``paths`` not yet in the index; an indexed file whose
        size or modification time changed since it was embedded is embedded again.

        Returns (added or re-embedded, unchanged, skipped); the skipped images (unreadable) are
        also appended to ``self.skipped``. ``model``: a model or any embedding backend. Images
        are decoded by a DataLoader with ``num_workers`` processes. Embeddings holding NaN or
        infinity are refused (nothing is added).
        """
        changes = self._sync(model, paths, batch_size, progress, num_workers, drop_missing=False)
        return changes.added + changes.updated, changes.unchanged, changes.skipped

    def update(
        self,
        model: RAReIDModule | EmbeddingBackend,
        paths: Sequence[str | os.PathLike],
        batch_size: int = 64,
        progress: bool = False,
        num_workers: int = 0,
    ) -> IndexChanges:
        """Make the index match ``paths`` (a whole gallery folder): embed new files, re-embed
        changed ones (size or modification time), drop the indexed files not in ``paths``."""
        return self._sync(model, paths, batch_size, progress, num_workers, drop_missing=True)

    def _sync(
        self,
        model: RAReIDModule | EmbeddingBackend,
        paths: Sequence[str | os.PathLike],
        batch_size: int,
        progress: bool,
        num_workers: int,
        drop_missing: bool,
    ) -> IndexChanges:
        """:meth:`add` (``drop_missing=False``) or :meth:`update`; the changes name the skipped
        files and the degenerate crops the index holds afterwards."""
        changes = plan_changes(paths, self.paths, self.stats, self.root, drop_missing)
        changes.skipped = self._apply(model, changes, batch_size, progress, num_workers)
        changes.flagged = self.flagged_crops()
        return changes

    def _apply(
        self,
        model: RAReIDModule | EmbeddingBackend,
        changes: IndexChanges,
        batch_size: int,
        progress: bool,
        num_workers: int,
        batches: Iterable[dict[str, Any]] | None = None,
    ) -> list[SkippedImage]:
        """Embed ``changes.todo`` and apply ``changes``. ``batches``: the files of
        ``changes.todo`` already decoded and embedded (an ``embeddings`` entry each, in
        ``changes.todo`` order), e.g. on several devices by
        :func:`rareid.deploy.gallery.distributed.update_on_devices`."""
        from torch.utils.data import DataLoader
        from tqdm.auto import tqdm

        backend = as_backend(model)
        self.check_model(backend)
        skipped: list[SkippedImage] = []
        vectors, names, sizes, stats = [], [], [], []
        level = self.num_levels
        loader = batches
        if loader is None:
            loader = DataLoader(
                GalleryFiles(changes.todo, self.preprocess),
                batch_size=batch_size,
                num_workers=num_workers,
                collate_fn=collate_gallery,
            )
        bar = tqdm(
            total=len(changes.todo), desc="embedding gallery", unit="img", disable=not progress
        )
        for batch in loader:
            for path, reason, name in batch["failed"]:
                skipped.append(SkippedImage(path, reason))
                # counted as skipped, not as added or re-embedded (a changed file that became
                # unreadable is dropped all the same)
                if name in changes.changed:
                    changes.updated -= 1
                else:
                    changes.added -= 1
            if batch["names"]:
                levels = torch.full((len(batch["names"]),), level, dtype=torch.long)
                embedded = batch.get("embeddings")
                if embedded is None:
                    embedded = backend.embed(batch["images"], levels)
                bad = ~torch.isfinite(embedded).all(1)
                if bool(bad.any()):
                    first = [batch["paths"][i] for i in bad.nonzero().flatten().tolist()[:3]]
                    raise GalleryIndexError(
                        f"the model gives NaN or infinite embeddings for {int(bad.sum())} "
                        f"image(s), e.g. {', '.join(first)}: is the checkpoint trained? "
                        "nothing written"
                    )
                vectors.append(embedded)
                names += batch["names"]
                sizes += batch["sizes"]
                stats += batch["stats"]
            bar.update(len(batch["names"]) + len(batch["failed"]))
        bar.close()
        self._drop(changes.drop)
        if vectors:
            self.embeddings = torch.cat([self.embeddings, *vectors])
            self.paths += names
            self.sizes = np.concatenate([self.sizes, np.asarray(sizes, dtype=np.int64)])
            self.stats = np.concatenate([self.stats, np.asarray(stats, dtype=np.int64)])
            self.levels = torch.cat(
                [self.levels, torch.full((len(names),), level, dtype=torch.long)]
            )
        self.skipped += skipped
        if changes.drop or vectors:
            self.ann = None  # built on other rows: rebuild it (see build_or_update)
        return skipped

    def _drop(self, positions: Sequence[int]) -> None:
        """Remove the rows at ``positions``."""
        if not len(positions):
            return
        keep = np.ones(len(self), dtype=bool)
        keep[list(positions)] = False
        rows = torch.from_numpy(keep)
        self.embeddings = self.embeddings[rows]
        self.levels = self.levels[rows]
        self.sizes = self.sizes[keep]
        self.stats = self.stats[keep]
        self.paths = [name for name, kept in zip(self.paths, keep, strict=True) if kept]

    # ------------------------------------------------------------------ files
    def record(self) -> IndexRecord:
        """The index as the arrays of its file."""
        return IndexRecord(
            embeddings=self.embeddings.detach().cpu().float().numpy(),
            paths=self.paths,
            sizes=self.sizes,
            levels=self.levels.cpu().numpy(),
            root=self.root,
            rates=self.rates,
            split_sizes=self.split_sizes,
            metric=self.metric,
            preprocess=self.preprocess,
            checkpoint_sha256=self.checkpoint_sha256,
            checkpoint_path=self.checkpoint_path,
            level_policy=self.level_policy,
            calibration=self.calibration,
            stats=self.stats,
            storage_dtype=self.storage_dtype,
            ann_meta=self.ann.describe() if self.ann is not None else None,
            ann_arrays=self.ann.to_arrays() if self.ann is not None else {},
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the index atomically (a temporary file in the same folder, then a rename)."""
        return self.record().save(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> GalleryIndex:
        """Read an index written by :meth:`save` (no pickle involved); a damaged file is one
        :class:`GalleryIndexError` naming it (:func:`~rareid.deploy.gallery.index_file.read_index_file`)."""
        return cls.from_record(IndexRecord.load(path))

    @classmethod
    def from_record(cls, record: IndexRecord) -> GalleryIndex:
        """The index of a file's arrays, in tensors."""
        ann = None
        if record.ann_meta:
            from rareid.deploy.gallery.ann import AnnIndex

            ann = AnnIndex.from_arrays(record.ann_meta, record.ann_arrays)
        source = record.preprocess
        return cls(
            embeddings=torch.from_numpy(np.asarray(record.embeddings, dtype=np.float32)),
            paths=list(record.paths),
            sizes=record.sizes,
            levels=torch.from_numpy(np.asarray(record.levels, dtype=np.int64)),
            root=record.root,
            rates=record.rates,
            split_sizes=record.split_sizes,
            metric=record.metric,  # type: ignore[arg-type]
            preprocess=Preprocess(source.img_size, source.mean, source.std),
            checkpoint_sha256=record.checkpoint_sha256,
            checkpoint_path=record.checkpoint_path,
            level_policy=record.level_policy,
            calibration=record.calibration,
            stats=record.stats,
            storage_dtype=record.storage_dtype,  # type: ignore[arg-type]
            ann=ann,
        )
