"""Embedding runtimes behind one interface: a preprocessed batch of crops and their levels in,
zero-padded embeddings (N, d) out, on the CPU.

:class:`TorchBackend` runs a loaded :class:`~rareid.models.module.RAReIDModule`;
:class:`OnnxBackend` runs a file written by ``rareid export`` through onnxruntime. The gallery
index embeds with either one and ``rareid search`` embeds its queries with either one, so a
serving stack swaps the runtime without touching the ranking.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from rareid.models.module import RAReIDModule


def require_onnx() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise ImportError(
            "ONNX export needs onnx and onnxruntime: pip install 'rareid[deploy]'"
        ) from None
    return onnx, onnxruntime


def require_onnxruntime() -> Any:
    """onnxruntime alone: running an exported file does not need the ``onnx`` package."""
    try:
        import onnxruntime
    except ImportError:
        raise ImportError(
            "running an ONNX model needs onnxruntime: pip install 'rareid[deploy]'"
        ) from None
    return onnxruntime


class EmbeddingBackend(ABC):
    """A runtime that embeds crops at their levels.

    ``rates`` and ``split_sizes`` describe the model behind it (``None`` when the runtime does not
    say), so that an index refuses the embeddings of another model.
    """

    rates: list[float] | None = None
    split_sizes: list[int] | None = None

    @abstractmethod
    def embed(self, images: torch.Tensor, levels: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """Zero-padded embeddings (N, d), float32 on the CPU, of ``images`` at ``levels``."""


def embed_in_batches(
    runtime: EmbeddingBackend,
    images: Sequence[Any],
    preprocess: Callable[[Sequence[Any]], torch.Tensor],
    levels: torch.Tensor | Sequence[int],
    batch_size: int = 64,
) -> torch.Tensor:
    """Embeddings of ``images`` (decoded crops or paths), ``batch_size`` at a time.

    Why: preprocessing and embedding a whole folder of queries at once holds every input
    tensor and every activation together, which grows with the number of queries (thousands
    of crops at 256x128 take tens of GB); one batch at a time keeps memory flat.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size}")
    levels = torch.as_tensor(levels).long().reshape(-1)
    if levels.numel() != len(images):
        raise ValueError(f"expected one level per image ({len(images)}), got {levels.numel()}")
    parts = [
        runtime.embed(
            preprocess(images[start : start + batch_size]), levels[start : start + batch_size]
        )
        for start in range(0, len(images), batch_size)
    ]
    if not parts:
        raise ValueError("no images to embed")
    return torch.cat(parts)


class TorchBackend(EmbeddingBackend):
    """A PyTorch model, run in eval mode (its BatchNorm statistics untouched).

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


class OnnxBackend(EmbeddingBackend):
    """An exported ONNX file run by onnxruntime (CPU, or CUDA when available).

    Examples::

        backend = OnnxBackend("model.onnx")  # written by `rareid export`
        index = GalleryIndex.from_onnx(backend, "gallery/")
    """

    def __init__(self, path: str | Path, expected_sha256: str | None = None) -> None:
        onnxruntime = require_onnxruntime()
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"ONNX model {str(path)!r} does not exist; write it with `rareid export`"
            )
        providers = [
            p
            for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
            if p in onnxruntime.get_available_providers()
        ]
        from rareid.deploy.model.onnx_integrity import check_weights, open_session

        self.session = open_session(path, providers)
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        check_weights(path, self.metadata)
        digest = self.metadata.get("rareid_checkpoint_sha256", "")
        if expected_sha256 and digest and digest != expected_sha256:
            raise ValueError(
                f"{str(path)!r} was exported from another checkpoint than the index was built "
                "with: export the index's checkpoint"
            )
        rates = json.loads(self.metadata.get("rareid_rates", "[]"))
        sizes = json.loads(self.metadata.get("rareid_split_sizes", "[]"))
        self.rates = [float(r) for r in rates] or None
        self.split_sizes = [int(s) for s in sizes] or None
        self.num_levels = len(rates) or None

    def embed(self, images: torch.Tensor, levels: torch.Tensor | Sequence[int]) -> torch.Tensor:
        levels = torch.as_tensor(levels).long().reshape(-1)
        if levels.numel() != images.shape[0]:
            raise ValueError(
                f"expected one level per image ({images.shape[0]}), got {levels.numel()}"
            )
        if (
            self.num_levels
            and levels.numel()
            and (int(levels.min()) < 1 or int(levels.max()) > self.num_levels)
        ):
            raise ValueError(
                f"levels: expected values in 1..{self.num_levels}, got {levels.tolist()}"
            )
        outputs = self.session.run(
            None,
            {
                "images": images.detach().cpu().float().numpy(),
                "levels": levels.numpy().astype(np.int64),
            },
        )
        return torch.from_numpy(outputs[0])


def as_backend(model: RAReIDModule | EmbeddingBackend) -> EmbeddingBackend:
    """``model`` itself if it is a backend, else the torch backend running it."""
    return model if isinstance(model, EmbeddingBackend) else TorchBackend(model)
