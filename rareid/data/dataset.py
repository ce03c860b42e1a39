"""The torch Datasets: training HR/LR view pairs and the rows of an MLR evaluation set."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from rareid.data.lowres import degrade
from rareid.data.pixels import read_image
from rareid.data.protocol import EvalTable
from rareid.data.readers.base import ImageRecord
from rareid.data.samplers import SampleKey
from rareid.data.transforms import EvalTransform, TrainTransform
from rareid.levels import rate_to_level

__all__ = ["EvalDataset", "TrainDataset"]


def _limit_worker_threads() -> None:
    """Inside a DataLoader worker keep OpenCV single-threaded (workers are the parallelism)."""
    if get_worker_info() is not None:
        cv2.setNumThreads(0)


class TrainDataset(Dataset):
    """Training records -> dicts ``hr``, ``lr``, ``lr_level``, ``pid``, ``camid``.

    Randomness (LR rate, crops, flips): indexed by a :class:`~rareid.data.samplers.SampleKey`
    (what ``PKSampler(keyed=True)`` yields, as the DataModule sets it up), a sample's views are
    drawn from a Generator seeded with (``seed``, epoch, step, slot): the same whatever the
    number of workers or devices, and the same in an epoch run after a resume as in an
    uninterrupted fit. Indexed by a plain int, the draws come from one Generator per process,
    seeded from (``seed``, ``rank``, the worker's torch seed) on first use in that process.
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        transform: TrainTransform,
        seed: int = 0,
        level_rates: Sequence[float] | None = None,
    ) -> None:
        self.paths = [r.path for r in records]
        self.pids = np.asarray([r.pid for r in records], dtype=np.int64)
        self.camids = np.asarray([r.camid for r in records], dtype=np.int64)
        self.transform = transform
        # Levels are relative to the model's rates (``level_rates``, default the drawn ones).
        level_rates = transform.rates if level_rates is None else level_rates
        self.levels = {rate: rate_to_level(rate, level_rates) for rate in transform.rates}
        self.seed = int(seed)
        self.rank = 0
        self._rng_key: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def _ensure_rng(self) -> None:
        key = (os.getpid(), self.rank)
        if self._rng_key == key:
            return
        worker = get_worker_info()
        worker_seed = torch.initial_seed() if worker is not None else 0
        self.transform.set_rng(np.random.default_rng([self.seed, self.rank, worker_seed]))
        _limit_worker_threads()
        self._rng_key = key

    def __getitem__(self, index: int | SampleKey) -> dict[str, Any]:
        self._ensure_rng()
        if isinstance(index, SampleKey):
            key = index
            index = key.index
            self.transform.set_rng(
                np.random.default_rng([self.seed, key.epoch, key.step, key.slot])
            )
        image = read_image(self.paths[index])
        hr, lr, rate = self.transform(image)
        return {
            "hr": hr,
            "lr": lr,
            "lr_level": self.levels[rate],
            "pid": int(self.pids[index]),
            "camid": int(self.camids[index]),
        }


class EvalDataset(Dataset):
    """Evaluation rows -> dicts ``image``, ``level``, ``pid``, ``camid``, ``role``, ``trial``,
    ``gallery_trials``, ``index`` (what ``RAReIDModule`` consumes)."""

    def __init__(self, table: EvalTable, transform: EvalTransform) -> None:
        self.table = table
        self.transform = transform
        self._threads_pid: int | None = None

    def __len__(self) -> int:
        return len(self.table)

    def _check_index(self, index: int) -> int:
        index = int(index)
        if not 0 <= index < len(self.table):
            raise IndexError(f"index {index} is outside 0..{len(self.table) - 1}")
        return index

    def path(self, index: int) -> str:
        return self.table.paths[int(self.table.path_index[self._check_index(index)])]

    def info(self, index: int) -> dict[str, Any]:
        """Everything known about row ``index`` (for rank-list pictures and debugging)."""
        t = self.table
        i = self._check_index(index)
        return {
            "index": i,
            "path": self.path(i),
            "role": int(t.role[i]),
            "trial": int(t.trial[i]),
            "rate": float(t.rate[i]),
            "level": int(t.level[i]),
            "pid": int(t.pid[i]),
            "camid": int(t.camid[i]),
            "gallery_trials": int(t.gallery_trials[i]),
            "synthesized": bool(t.synthesize[i]),
        }

    def load_image(self, index: int) -> np.ndarray:
        """The image as the model sees it before resizing: degraded queries at their LR size."""
        i = self._check_index(index)
        image = read_image(self.path(i))
        if self.table.synthesize[i]:
            image = degrade(image, float(self.table.rate[i]), self.transform.interpolation)
        return np.ascontiguousarray(image)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self._threads_pid != os.getpid():
            _limit_worker_threads()
            self._threads_pid = os.getpid()
        t = self.table
        i = int(index)
        image = read_image(self.path(i))
        rate = float(t.rate[i]) if t.synthesize[i] else 1.0
        return {
            "image": self.transform(image, rate),
            "level": int(t.level[i]),
            "pid": int(t.pid[i]),
            "camid": int(t.camid[i]),
            "role": int(t.role[i]),
            "trial": int(t.trial[i]),
            "gallery_trials": int(t.gallery_trials[i]),
            "index": i,
        }
