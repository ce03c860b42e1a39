"""``rareid predict`` output a user can trace, and a dataset without a training split."""

from __future__ import annotations

import shutil
from pathlib import Path

import lightning as L
import pytest
import torch

from rareid.callbacks.writer import EmbeddingWriter
from rareid.data.datamodule import ReIDDataModule
from rareid.data.protocol import Role
from tests.data.fixtures import MARKET_DIR, market_datamodule, write_market_tree

SIZE = (32, 16)


class Embedder(L.LightningModule):
    """Returns what ``RAReIDModule.predict_step`` returns, from a tiny linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 4)

    def predict_step(self, batch, batch_idx):
        out = {"embedding": self.layer(batch["image"].mean(dim=(2, 3)))}
        for key in ("level", "pid", "camid", "role", "trial", "index"):
            out[key] = batch[key]
        return out


def predict(dm: ReIDDataModule, writer: EmbeddingWriter) -> None:
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        callbacks=[writer],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.predict(Embedder(), datamodule=dm, return_predictions=False)


def make_dm(root: Path, **kwargs) -> ReIDDataModule:
    defaults = {"input_size": SIZE, "trials": 2, "eval_batch_size": 7, "val_identities": 0}
    return market_datamodule(root, **{**defaults, **kwargs})


def test_predict_output_names_files_rates_and_levels(tmp_path):
    write_market_tree(tmp_path / "data", size=(32, 16), extras=False)
    dm = make_dm(tmp_path / "data")
    out = tmp_path / "run" / "predictions"
    writer = EmbeddingWriter(str(out))
    predict(dm, writer)
    saved = torch.load(out / "embeddings.pt", weights_only=True)
    table = dm.eval_dataset("predict").table
    assert len(saved["path"]) == len(saved["embedding"]) == len(table)
    for row, (index, path) in enumerate(zip(saved["index"].tolist(), saved["path"], strict=True)):
        full = dm.eval_sample_info("predict", index)["path"]
        assert path == Path(full).relative_to(tmp_path / "data").as_posix()
        assert path.startswith(f"{MARKET_DIR}/")
        assert saved["rate"][row].item() == table.rate[index]
        assert saved["level"][row].item() == table.level[index]
    queries = saved["role"] == Role.QUERY
    assert set(saved["rate"][queries].tolist()) <= {2.0, 3.0, 4.0}
    assert (saved["rate"][saved["role"] == Role.GALLERY] == 1).all()

    before = (out / "embeddings.pt").read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        predict(dm, EmbeddingWriter(str(out)))
    assert (out / "embeddings.pt").read_bytes() == before
    predict(make_dm(tmp_path / "data", seed=5), EmbeddingWriter(str(out), overwrite=True))
    assert (out / "embeddings.pt").read_bytes() != before
    assert not list(out.glob(".*tmp"))


def test_dataset_without_training_split_can_be_tested(tmp_path):
    info = write_market_tree(tmp_path / "data", size=(32, 16), extras=False)
    shutil.rmtree(info.base / "bounding_box_train")
    dm = make_dm(tmp_path / "data")
    assert dm.dataset.train == [] and dm.num_classes == 0
    dm.setup("test")
    rows = sum(len(batch["index"]) for batch in dm.test_dataloader())
    assert rows == len(dm.eval_dataset("test"))
    predict(dm, EmbeddingWriter(str(tmp_path / "out")))
    assert (tmp_path / "out" / "embeddings.pt").is_file()
    with pytest.raises(ValueError, match="no training images"):
        dm.setup("fit")
