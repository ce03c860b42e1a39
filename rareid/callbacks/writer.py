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
    batches, and, so that every row can be traced to its image, ``path`` (a list of file
    names relative to the dataset root) and ``rate`` (the query's downsampling rate, 1 for
    HR rows) when the DataModule can describe its rows. It loads with
    ``torch.load(path, weights_only=True)``. Under DDP every rank writes its own file
    (rows are identified by ``index``). An existing file is kept unless ``overwrite``.
    """

    def __init__(self, output_dir: str = "predictions", overwrite: bool = False) -> None:
        super().__init__(write_interval="epoch")
        self.output_dir = output_dir
        self.overwrite = overwrite
        self.path: Path | None = None

    def _target(self, trainer: L.Trainer) -> Path:
        suffix = f"_rank{trainer.global_rank}" if trainer.world_size > 1 else ""
        return Path(self.output_dir) / f"embeddings{suffix}.pt"

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # Refuse before any image is embedded, not after the whole predict loop.
        target = self._target(trainer)
        if stage == "predict" and target.exists() and not self.overwrite:
            raise FileExistsError(
                f"{target} exists; pass --predict_writer.overwrite true to replace it, or "
                "choose another --trainer.default_root_dir"
            )

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
        table: dict[str, Any] = {
            key: torch.cat([batch[key] for batch in batches]) for key in batches[0]
        }
        describe = getattr(trainer.datamodule, "describe_rows", None)
        if describe is not None and "index" in table:
            rows = describe("predict", table["index"].tolist())
            table["path"] = rows["path"]
            table["rate"] = torch.as_tensor(rows["rate"], dtype=torch.float64)
        self.path = self._target(trainer)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        torch.save(table, tmp)
        tmp.replace(self.path)
        print(f"embeddings: {self.path} ({len(table['embedding'])} rows)")
