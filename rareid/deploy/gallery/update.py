"""Writing an index in place: one writer at a time (:class:`IndexLock`), and what
``rareid index`` does (:func:`build_or_update`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rareid.deploy.gallery.files import IndexChanges
from rareid.deploy.gallery.index_file import GalleryIndexError
from rareid.deploy.gallery.record import IndexRecord, build_record
from rareid.deploy.model.backends import EmbeddingBackend, open_file_runtime
from rareid.runs import RunLock, UsageError

if TYPE_CHECKING:
    from rareid.deploy.gallery.distributed import DeviceLayout
    from rareid.deploy.gallery.index import GalleryIndex, Metric, StorageDtype


class IndexLock(RunLock):
    """The lock of one index file (``.NAME.lock`` beside it): one writer at a time."""

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(Path(path).parent)
        self.index_path = Path(path)
        self.path = self.index_path.parent / f".{self.index_path.name}.lock"

    def acquire(self) -> IndexLock:
        self.index_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            super().acquire()
        except UsageError:
            owner = self._owner()
            who = "an unreadable lock" if owner is None else f"process {owner[0]} on {owner[1]}"
            raise UsageError(
                f"the index {str(self.index_path)!r} is being written by {who} (lock file "
                f"{self.path}); wait for it to finish and run again (delete the lock file only "
                "if no rareid index is running)"
            ) from None
        return self


def runs_without_torch(
    add: bool, onnx: str | os.PathLike | None, ann: str | None, layout: DeviceLayout | None
) -> bool:
    """Whether :func:`build_or_update` builds the index without importing torch: a new index
    (no ``add``) embedded by an exported model on one device, with no approximate index."""
    return onnx is not None and not add and ann is None and layout is None


def check_metric(metric: Metric | None, index: GalleryIndex | IndexRecord) -> None:
    """Refuse a ``--metric`` the model does not measure: its distances would be ranked by
    another rule than the one it was trained for."""
    if metric is not None and metric != index.metric:
        raise GalleryIndexError(
            f"--metric {metric}: the model measures {index.metric} distances (recorded in its "
            f"checkpoint or ONNX file); drop --metric or pass --metric {index.metric}"
        )


def build_or_update(
    out: str | os.PathLike,
    paths: Sequence[str | os.PathLike],
    gallery: str | os.PathLike,
    add: bool = False,
    checkpoint: str | os.PathLike | None = None,
    onnx: str | os.PathLike | None = None,
    ann: str | None = None,
    metric: Metric | None = None,
    dtype: StorageDtype | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str = "auto",
    progress: bool = False,
    layout: DeviceLayout | None = None,
) -> IndexChanges | None:
    """What ``rareid index`` does: build ``out`` from ``paths`` (or, with ``add``, bring it up to
    date with them), embedding with the checkpoint or the ONNX file, and write it atomically.

    The caller holds the index's :class:`IndexLock`. With ``add`` an existing approximate index
    is rebuilt on the updated rows (``ann`` may ask for another kind). With a ``layout`` of
    several devices every rank calls it (rank 0 holding the lock); rank 0 writes the file and
    the others return ``None`` (:mod:`rareid.deploy.gallery.distributed`).
    """
    metric = _exported_model_metric(checkpoint, onnx, metric, layout)
    if runs_without_torch(add, onnx, ann, layout):
        return _build_without_torch(out, paths, gallery, onnx, metric, dtype, batch_size, progress)
    from rareid.deploy.gallery.index import GalleryIndex
    from rareid.deploy.model.backend_torch import TorchBackend
    from rareid.deploy.model.checks import resolve_device
    from rareid.deploy.model.inference import checkpoint_facts, load_model

    index = GalleryIndex.load(out) if add else None
    digest = checkpoint_facts(checkpoint)[0] if checkpoint else ""
    if index is not None and checkpoint and digest != index.checkpoint_sha256:
        raise GalleryIndexError(
            f"--ckpt: {str(checkpoint)!r} is not the checkpoint the index {str(out)!r} was built "
            f"with (SHA-256 {digest[:12]}… vs {index.checkpoint_sha256[:12]}…); embeddings of "
            "two models cannot be mixed: build a new index"
        )
    if onnx is not None:
        expected = index.checkpoint_sha256 if index is not None else None
        backend: EmbeddingBackend = open_file_runtime(onnx, expected_sha256=expected or None)
        if index is None:
            index = GalleryIndex.from_onnx(backend, gallery, metric)
    else:
        if checkpoint is None:
            raise GalleryIndexError("--ckpt: a checkpoint is needed (or --onnx MODEL.onnx)")
        # several devices: the Trainer moves the model to each rank's device
        model, preprocess = load_model(
            checkpoint, resolve_device(device) if layout is None else "cpu"
        )
        backend = TorchBackend(model)
        if index is None:
            index = GalleryIndex.empty(model, gallery, preprocess, checkpoint)
    check_metric(metric, index)
    previous_ann = index.ann.kind if index.ann is not None else None
    if dtype is not None:  # None: the loaded index keeps its own
        index.storage_dtype = dtype
    if layout is not None:
        from rareid.deploy.gallery.distributed import update_on_devices

        update = update_on_devices(index, model, paths, layout, batch_size, num_workers, progress)
        if update is None:  # not rank 0: rank 0 writes the index
            return None
        changes = update
    else:
        changes = index.update(
            backend, paths, batch_size=batch_size, progress=progress, num_workers=num_workers
        )
    if len(index) == 0:
        unreadable = ", ".join(item.path for item in changes.skipped[:5])
        raise GalleryIndexError(
            f"--gallery: none of the {len(paths)} images under {str(gallery)!r} could be read "
            f"({unreadable}); nothing written"
        )
    changes.total = len(index)
    kind = ann or previous_ann
    if kind is not None and (index.ann is None or index.ann.kind != kind):
        from rareid.deploy.gallery.ann import AnnIndex

        index.ann = AnnIndex.build(index.embeddings, index.split_sizes, index.metric, kind)
    index.save(out)
    return changes


def _exported_model_metric(
    checkpoint: str | os.PathLike | None,
    onnx: str | os.PathLike | None,
    metric: str | None,
    layout: DeviceLayout | None,
) -> str | None:
    """The distance to index an exported model's embeddings with: ``metric``, else the
    checkpoint's when one is given beside the model (the ONNX file may not record it)."""
    if layout is not None and onnx is not None:
        raise GalleryIndexError(
            "--devices: several devices embed with the checkpoint (--backend torch); an ONNX "
            "model runs on one device"
        )
    if metric is None and checkpoint and onnx is not None:
        from rareid.deploy.model.inference import checkpoint_facts

        return checkpoint_facts(checkpoint)[2] or None
    return metric


def _build_without_torch(
    out: str | os.PathLike,
    paths: Sequence[str | os.PathLike],
    gallery: str | os.PathLike,
    model: str | os.PathLike,
    metric: str | None,
    dtype: str | None,
    batch_size: int,
    progress: bool,
) -> IndexChanges:
    """A new index embedded by an exported model (ONNX, OpenVINO or a bundle), without torch."""
    backend = open_file_runtime(model)
    record = IndexRecord.for_runtime(backend, gallery, metric)
    check_metric(metric, record)  # type: ignore[arg-type]
    if dtype is not None:
        record.storage_dtype = dtype
    changes = build_record(record, backend, paths, batch_size=batch_size, progress=progress)
    if len(record) == 0:
        unreadable = ", ".join(item.path for item in changes.skipped[:5])
        raise GalleryIndexError(
            f"--gallery: none of the {len(paths)} images under {str(gallery)!r} could be read "
            f"({unreadable}); nothing written"
        )
    record.save(out)
    return changes
