"""``rareid predict`` output: the embeddings of the evaluation set, saved to disk."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter


class EmbeddingWriter(BasePredictionWriter):
    """Write ``predict`` results to ``<output_dir>/embeddings[_rank<r>].pt``.

    The file holds one tensor per key of ``RAReIDModule.predict_step`` (``embedding``,
    ``level``, ``pid``, ``camid``, ``role``, ``trial``, ``index``), concatenated over
    batches; it loads with ``torch.load(path, weights_only=True)``. Under DDP every rank
    writes its own file (rows are identified by ``index``).
    """

    def __init__(self, output_dir: str = "predictions") -> None:
        super().__init__(write_interval="epoch")
        self.output_dir = output_dir
        self.path: Path | None = None

    def write_on_epoch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        predictions: Sequence[Any],
        batch_indices: Sequence[Any],
    ) -> None:
        batches = (
            predictions[0] if predictions and isinstance(predictions[0], list) else predictions
        )
        if not batches:
            return
        table = {key: torch.cat([batch[key] for batch in batches]) for key in batches[0]}
        out = Path(self.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        suffix = f"_rank{trainer.global_rank}" if trainer.world_size > 1 else ""
        self.path = out / f"embeddings{suffix}.pt"
        torch.save(table, self.path)
        print(f"embeddings: {self.path} ({len(table['embedding'])} rows)")
