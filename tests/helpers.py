"""Tiny in-test data and model helpers for the model, callback and resume tests.

``RandomReIDDataModule`` yields training batches in the shape the DataModule contract
fixes (``hr``, ``lr``, ``lr_level``, ``pid``, ``camid``) from seeded random tensors, so
Lightning fits run in a second on CPU with no files on disk. The data are fixed at
construction and read in order (no shuffling), which makes interrupted/resumed runs
comparable step for step.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from rareid.experiment import override_args

#: A small, fast model configuration (ResNet-18 at 64x32, d = 16 split into 4 sub-vectors).
TINY_MODEL: dict[str, Any] = {
    "backbone": "resnet18",
    "num_classes": 4,
    "rates": (1, 2, 3, 4),
    "embedding_dim": 16,
    "img_size": (64, 32),
    "verif_hidden": 8,
    "pretrained": False,
}


def tiny_module_kwargs(**overrides: Any) -> dict[str, Any]:
    """``TINY_MODEL`` with some options changed."""
    return {**TINY_MODEL, **overrides}


class RandomReIDTrainSet(Dataset):
    """``size`` samples of random HR/LR views; identities cycle so every batch has pairs."""

    def __init__(
        self,
        size: int,
        num_classes: int,
        num_levels: int,
        img_size: tuple[int, int],
        seed: int,
    ) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.hr = torch.randn(size, 3, *img_size, generator=generator)
        self.lr = torch.randn(size, 3, *img_size, generator=generator)
        self.lr_level = torch.randint(1, num_levels + 1, (size,), generator=generator)
        # Consecutive pairs share an identity (P x K with K = 2 in every even-sized batch).
        self.pid = (torch.arange(size) // 2) % num_classes
        self.camid = torch.arange(size) % 2

    def __len__(self) -> int:
        return self.hr.shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {
            "hr": self.hr[index],
            "lr": self.lr[index],
            "lr_level": self.lr_level[index],
            "pid": self.pid[index],
            "camid": self.camid[index],
        }


class RandomReIDDataModule(L.LightningDataModule):
    """Training-only DataModule of random tensors (no validation loader)."""

    def __init__(
        self,
        size: int = 16,
        batch_size: int = 4,
        num_classes: int = 4,
        num_levels: int = 4,
        img_size: tuple[int, int] = (64, 32),
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.num_classes = num_classes
        self.dataset = RandomReIDTrainSet(size, num_classes, num_levels, img_size, seed)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=self.batch_size, shuffle=False, num_workers=0)


def random_train_batch(
    batch_size: int = 4,
    num_classes: int = 4,
    num_levels: int = 4,
    img_size: tuple[int, int] = (64, 32),
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """One training batch dict (as the DataLoader would collate it)."""
    data = RandomReIDTrainSet(batch_size, num_classes, num_levels, img_size, seed)
    return {
        "hr": data.hr,
        "lr": data.lr,
        "lr_level": data.lr_level,
        "pid": data.pid,
        "camid": data.camid,
    }


def quiet_trainer_kwargs(tmp_path, **overrides: Any) -> dict[str, Any]:
    """Trainer options for fast, silent CPU test fits without validation or loggers."""
    options: dict[str, Any] = {
        "accelerator": "cpu",
        "devices": 1,
        "default_root_dir": str(tmp_path),
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "limit_val_batches": 0,
        "num_sanity_val_steps": 0,
    }
    options.update(overrides)
    return options


#: The settings of a tiny ``rareid`` run on ``conf/quickstart.yaml``: small input and
#: embedding, one trial, no loggers, no progress bar, no t-SNE.
TINY_RUN: dict[str, Any] = {
    "data.input_size": [64, 32],
    "data.p": 2,
    "data.k": 2,
    "data.trials": 1,
    "model.embedding_dim": 32,
    "trainer.logger": False,
    "trainer.enable_progress_bar": False,
    "report.tsne": False,
}


def tiny_run_args(data: Path, run: Path, options: Mapping[str, Any] | None = None) -> list[str]:
    """Command-line options of a tiny run on ``data`` in the run folder ``run``; ``options``
    override :data:`TINY_RUN`."""
    settings = {**TINY_RUN, "data.root": str(data), "trainer.default_root_dir": str(run)}
    quickstart = Path(__file__).resolve().parents[1] / "conf" / "quickstart.yaml"
    return [f"--config={quickstart}", *override_args({**settings, **(options or {})})]


def one_error_line(err: str, subcommand: str) -> str:
    """The single ``rareid <subcommand>: error:`` line of ``err`` (and no traceback)."""
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    assert errors[0].startswith(f"rareid {subcommand}: error: "), errors[0]
    return errors[0]
