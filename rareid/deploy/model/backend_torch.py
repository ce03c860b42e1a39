"""The torch runtime: a loaded model, run in eval mode (its BatchNorm statistics untouched)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from rareid.deploy.model.backends import EmbeddingBackend

if TYPE_CHECKING:
    from rareid.models.module import RAReIDModule


class TorchBackend(EmbeddingBackend):
    """A PyTorch model.

    Examples::

        model, preprocess = load_model("last.ckpt")
        embeddings = TorchBackend(model).embed(preprocess(["a.jpg", "b.jpg"]), [4, 1])
    """

    def __init__(self, model: RAReIDModule) -> None:
        self.model = model
        self.rates = [float(r) for r in model.rates]
        self.split_sizes = [int(s) for s in model.distance_split_sizes]

    def embed(self, images: torch.Tensor, levels: torch.Tensor | Sequence[int]) -> torch.Tensor:
        levels = torch.as_tensor(levels).long().reshape(-1)
        was_training = self.model.training
        self.model.eval()
        try:
            return self.model.embed(images, levels).float().cpu()
        finally:
            self.model.train(was_training)

    def embed_arrays(self, images: np.ndarray, levels: Any) -> np.ndarray:
        return self.embed(torch.from_numpy(np.asarray(images, dtype=np.float32)), levels).numpy()
