"""Embedding backends: the torch backend is ``model.embed`` in eval mode with the training mode
restored, and an index refuses a backend of another model. (The ONNX backend against the torch
one: tests/deploy/model/test_export.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rareid.deploy.gallery.index import GalleryIndex, GalleryIndexError
from rareid.deploy.model.backend_torch import TorchBackend
from rareid.deploy.model.backends import EmbeddingBackend, as_backend
from rareid.deploy.model.inference import Preprocess
from tests.deploy.conftest import make_model


class OtherModel(EmbeddingBackend):
    """A runtime of a model with other sub-vector sizes."""

    def __init__(self, rates: list[float], split_sizes: list[int]) -> None:
        self.rates, self.split_sizes = rates, split_sizes

    def embed(self, images, levels):
        return torch.zeros(images.shape[0], sum(self.split_sizes))


def test_torch_backend_embeds_in_eval_mode_and_restores_training() -> None:
    torch.manual_seed(0)
    model = make_model().train()
    backend = as_backend(model)
    assert isinstance(backend, TorchBackend) and as_backend(backend) is backend
    assert backend.rates == [float(r) for r in model.rates]
    images, levels = torch.randn(3, 3, 64, 32), [1, 4, 2]
    got = backend.embed(images, levels)
    assert model.training  # restored
    model.eval()
    torch.testing.assert_close(got, model.embed(images, torch.tensor(levels)))
    assert got.dtype == torch.float32 and got.device.type == "cpu"


def test_index_refuses_the_backend_of_another_model(tmp_path) -> None:
    model = make_model()
    index = GalleryIndex.empty(model, tmp_path, Preprocess((64, 32), (0.5,) * 3, (0.25,) * 3))
    sizes = [int(s) for s in model.distance_split_sizes]
    other = OtherModel(index.rates, [*sizes[:-1], sizes[-1] + 1])
    with pytest.raises(GalleryIndexError, match="not the one of the index"):
        index.add(other, [tmp_path / "x.png"])
    index.check_model(OtherModel(index.rates, sizes))  # the same model: accepted
    assert len(index) == 0 and np.asarray(index.sizes).shape == (0, 2)
