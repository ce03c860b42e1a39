"""Embedding a gallery on several devices and nodes through Lightning's predict loop (DDP).

``rareid index --devices N [--num-nodes M]`` comes here. Lightning's ``ddp`` strategy runs the
command once per device (the launching process is rank 0 and starts the others, or a cluster
launcher such as torchrun or SLURM starts them all); every rank lists the gallery and plans
the same update of the index, embeds its share of the files, and rank 0 gathers every rank's
embeddings with their positions in the planned list, puts them back in that order and writes
the index. The file is the one a single device writes: same paths, same order, same
embeddings up to float rounding.

Only the multi-device path imports this module, so the one-device path and the helpers'
``--help`` never import Lightning.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from rareid.deploy.gallery.files import IndexChanges, plan_changes
from rareid.deploy.gallery.index import GalleryIndexError
from rareid.deploy.gallery.loader import GalleryFiles, collate_gallery
from rareid.deploy.model.backend_torch import TorchBackend
from rareid.deploy.model.inference import Preprocess
from rareid.runtime import mark_parent_for_children, quiet_third_party_noise

if TYPE_CHECKING:
    from rareid.deploy.gallery.index import GalleryIndex
    from rareid.models.module import RAReIDModule

Accelerator = Literal["auto", "cpu", "gpu"]
#: ``ddp`` only: its rank 0 is the process that holds the index lock, so the gathered
#: embeddings are written there (a spawning strategy's rank 0 is a child the lock holder
#: never hears back from).
Strategy = Literal["ddp"]
#: Where launchers put a process's rank: Lightning's own (``LOCAL_RANK``, ``NODE_RANK``),
#: torchrun (``RANK``, ``GROUP_RANK``) and SLURM (``SLURM_PROCID``).
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")


@dataclass(frozen=True)
class DeviceLayout:
    """The devices an index is embedded on: ``devices`` per node on ``num_nodes`` nodes."""

    devices: int = 1
    num_nodes: int = 1
    accelerator: Accelerator = "auto"
    strategy: Strategy = "ddp"

    @property
    def world_size(self) -> int:
        return self.devices * self.num_nodes


def is_rank_zero() -> bool:
    """Whether this process is global rank 0, the one that locks and writes the index.

    Read from the environment before any process group exists: a process is rank 0 unless a
    launcher gave it another rank (the first process of a run has none set yet).
    """
    return all(os.environ.get(name, "0").strip() in ("", "0") for name in RANK_VARIABLES)


class NumberedGalleryFiles(GalleryFiles):
    """Gallery files that also say their position in the planned list."""

    def __getitem__(self, position: int) -> dict[str, Any]:
        return {**super().__getitem__(position), "position": position}


def collate_numbered(items: list[dict[str, Any]]) -> dict[str, Any]:
    """:func:`collate_gallery` plus the positions of the readable and the unreadable files."""
    batch = collate_gallery(items)
    batch["positions"] = [item["position"] for item in items if "failed" not in item]
    batch["failed_positions"] = [item["position"] for item in items if "failed" in item]
    return batch


def plan_digest(todo: Sequence[tuple[str, Path]]) -> str:
    """A fingerprint of the files a rank is about to embed: every rank must plan the same."""
    return hashlib.sha256("\n".join(name for name, _ in todo).encode()).hexdigest()


class GalleryEmbedder(L.LightningModule):
    """Embeds this rank's share of the planned gallery files at the HR level.

    ``predict_step`` returns the batch's positions in the planned list with its embeddings
    (and the file names, sizes, times and unreadable files the index records); at the end of
    the epoch rank 0 gathers every rank's batches into :attr:`gathered`.
    """

    def __init__(
        self,
        model: RAReIDModule,
        todo: Sequence[tuple[str, Path]],
        preprocess: Preprocess,
        level: int,
        batch_size: int = 64,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.model = model
        self.files = NumberedGalleryFiles(todo, preprocess)
        self.digest = plan_digest(todo)
        self.level = level
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.outputs: list[dict[str, Any]] = []
        #: On rank 0 after ``trainer.predict``: one ``{"plan", "batches"}`` entry per rank.
        self.gathered: list[dict[str, Any]] | None = None

    def predict_dataloader(self) -> DataLoader:
        # A plain DistributedSampler (the Trainer's own is off: ``use_distributed_sampler=False``)
        # in list order: it pads the list with repeats of its first files so that every rank
        # gets as many, hence at least one; :func:`merge_rank_outputs` keeps each position once.
        sampler = DistributedSampler(
            self.files,
            num_replicas=self.trainer.world_size,
            rank=self.trainer.global_rank,
            shuffle=False,
        )
        return DataLoader(
            self.files,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate_numbered,
        )

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        embeddings = None
        if batch["names"]:
            levels = torch.full((len(batch["names"]),), self.level, dtype=torch.long)
            embeddings = TorchBackend(self.model).embed(batch["images"], levels)
        output = {key: value for key, value in batch.items() if key != "images"}
        output["embeddings"] = embeddings
        self.outputs.append(output)
        return output

    def on_predict_epoch_end(self) -> None:
        import torch.distributed as dist

        local = {"plan": self.digest, "batches": self.outputs}
        if not (dist.is_available() and dist.is_initialized()):
            self.gathered = [local]
            return
        gathered: list[Any] | None = None
        if self.trainer.is_global_zero:
            gathered = [None] * dist.get_world_size()
        dist.gather_object(local, gathered, dst=0)
        self.gathered = gathered


def merge_rank_outputs(gathered: Sequence[dict[str, Any]], count: int) -> dict[str, Any]:
    """Every rank's batches as one batch of the ``count`` planned files, in planned order.

    The DistributedSampler pads the list with repeats so that the ranks get equal shares: a
    position seen twice is kept once. A rank that planned other files (the gallery changed
    while the ranks listed it), or a position no rank embedded, is refused.
    """
    plans = {output["plan"] for output in gathered}
    if len(plans) > 1:
        raise GalleryIndexError(
            f"--gallery: the {len(gathered)} ranks found different files to embed (the gallery "
            "changed while they listed it, or it differs between nodes); run again on a "
            "gallery that does not change, the same on every node; nothing written"
        )
    embedded: dict[int, tuple[Any, ...]] = {}
    failed: dict[int, tuple[str, str, str]] = {}
    for output in gathered:
        for batch in output["batches"]:
            rows = zip(
                batch["positions"],
                batch["names"],
                batch["paths"],
                batch["sizes"],
                batch["stats"],
                batch["embeddings"] if batch["positions"] else [],
                strict=True,
            )
            for position, *record in rows:
                embedded.setdefault(position, tuple(record))
            for position, failure in zip(batch["failed_positions"], batch["failed"], strict=True):
                failed.setdefault(position, failure)
    missing = sorted(set(range(count)) - set(embedded) - set(failed))
    if missing:
        raise GalleryIndexError(
            f"{len(missing)} of {count} gallery files came back from no rank (first position "
            f"{missing[0]}); nothing written"
        )
    good = [embedded[position] for position in range(count) if position in embedded]
    return {
        "names": [record[0] for record in good],
        "paths": [record[1] for record in good],
        "sizes": [record[2] for record in good],
        "stats": [record[3] for record in good],
        "failed": [failed[position] for position in range(count) if position in failed],
        "embeddings": torch.stack([record[4] for record in good]) if good else None,
    }


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's start-up lines (devices found, process group members) are not the
    command's output: keep its warnings, drop its information."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def update_on_devices(
    index: GalleryIndex,
    model: RAReIDModule,
    paths: Sequence[str | os.PathLike],
    layout: DeviceLayout,
    batch_size: int = 64,
    num_workers: int = 0,
    progress: bool = False,
) -> IndexChanges | None:
    """:meth:`GalleryIndex.update` with the embedding spread over ``layout``'s devices.

    Every rank calls it with the same index and paths. Rank 0 gets the changes and the index
    updated as one device would update it; the other ranks get ``None`` and leave the index
    alone (rank 0 writes it).
    """
    changes = plan_changes(paths, index.paths, index.stats, index.root, drop_missing=True)
    index.check_model(TorchBackend(model))
    if not changes.todo:  # nothing to embed: no process group, no other rank started
        if not is_rank_zero():
            return None
        changes.skipped = index._apply(model, changes, batch_size, False, 0, batches=[])
        changes.flagged = index.flagged_crops()
        return changes
    embedder = GalleryEmbedder(
        model, changes.todo, index.preprocess, index.num_levels, batch_size, num_workers
    )
    quiet_third_party_noise()  # in every rank: Lightning re-runs the command for the others
    if is_rank_zero():
        mark_parent_for_children()  # the ranks Lightning starts die with this process
    with quiet_lightning():
        try:
            trainer = L.Trainer(
                accelerator=layout.accelerator,
                devices=layout.devices,
                num_nodes=layout.num_nodes,
                strategy=layout.strategy,
                use_distributed_sampler=False,
                logger=False,
                enable_checkpointing=False,
                enable_model_summary=False,
                enable_progress_bar=progress,
            )
        except MisconfigurationException as error:  # devices this machine does not have
            message = " ".join(str(error).split())
            raise ValueError(f"--devices/--accelerator: {message}") from None
        trainer.predict(embedder, return_predictions=False)
    if not trainer.is_global_zero:
        return None
    assert embedder.gathered is not None  # set on rank 0 by on_predict_epoch_end
    batch = merge_rank_outputs(embedder.gathered, len(changes.todo))
    changes.skipped = index._apply(model, changes, batch_size, False, 0, batches=[batch])
    changes.flagged = index.flagged_crops()
    return changes
