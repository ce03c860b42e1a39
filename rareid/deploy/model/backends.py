"""Embedding runtimes behind one interface: a preprocessed batch of crops and their levels in,
zero-padded embeddings (N, d) out, on the CPU.

One runtime per module, chosen from :data:`RUNTIMES`: ``torch`` runs a loaded model
(:mod:`~rareid.deploy.model.backend_torch`), ``onnx`` a file written by ``rareid export`` through
onnxruntime (:mod:`~rareid.deploy.model.backend_onnx`), ``openvino`` its OpenVINO IR
(:mod:`~rareid.deploy.model.backend_openvino`). Only the torch runtime imports torch: the others
take and give NumPy arrays (:meth:`EmbeddingBackend.embed_arrays`), so a serving process that
embeds through them never pays torch's start-up. The gallery index embeds with any of them and
``rareid search`` embeds its queries with any of them, so a serving stack swaps the runtime
without touching the ranking.
"""

from __future__ import annotations

import importlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from rareid.models.module import RAReIDModule

#: Runtime name -> (module, class) of its backend.
RUNTIMES: dict[str, tuple[str, str]] = {
    "torch": ("rareid.deploy.model.backend_torch", "TorchBackend"),
    "onnx": ("rareid.deploy.model.backend_onnx", "OnnxBackend"),
    "openvino": ("rareid.deploy.model.backend_openvino", "OpenVinoBackend"),
}


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


def as_level_array(levels: Any, count: int, num_levels: int | None) -> np.ndarray:
    """``levels`` as an int64 array of ``count`` values in 1..``num_levels`` (ValueError if not)."""
    values = np.asarray(levels.tolist() if hasattr(levels, "tolist") else levels)
    if values.dtype == bool or not np.issubdtype(values.dtype, np.number):
        raise ValueError(f"levels: expected integer levels, got {values.dtype}")
    values = values.reshape(-1)
    if np.issubdtype(values.dtype, np.floating) and not np.all(values == np.round(values)):
        raise ValueError(f"levels: expected whole numbers (1, 2, ...), got {values[:3].tolist()}")
    values = values.astype(np.int64)
    if values.size != count:
        raise ValueError(f"expected one level per image ({count}), got {values.size}")
    if num_levels and values.size and (values.min() < 1 or values.max() > num_levels):
        raise ValueError(f"levels: expected values in 1..{num_levels}, got {values.tolist()}")
    return values


class EmbeddingBackend:
    """A runtime that embeds crops at their levels.

    ``rates`` and ``split_sizes`` describe the model behind it (``None`` when the runtime does not
    say), so that an index refuses the embeddings of another model. A runtime defines
    :meth:`embed_arrays` (NumPy) or :meth:`embed` (tensors), or both; each falls back on the
    other.
    """

    rates: list[float] | None = None
    split_sizes: list[int] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if (
            cls.embed is EmbeddingBackend.embed
            and cls.embed_arrays is EmbeddingBackend.embed_arrays
        ):
            raise TypeError(f"{cls.__name__}: define embed_arrays (NumPy) or embed (tensors)")

    def embed_arrays(self, images: np.ndarray, levels: Any) -> np.ndarray:
        """Zero-padded float32 embeddings (N, d) of ``images`` (N, 3, H, W) at ``levels``."""
        import torch

        tensors = torch.from_numpy(np.asarray(images, dtype=np.float32))
        return self.embed(tensors, torch.as_tensor(np.asarray(levels))).numpy()

    def embed(self, images: torch.Tensor, levels: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """:meth:`embed_arrays` for callers that hold tensors (the torch gallery index)."""
        import torch

        array = images.detach().cpu().float().numpy() if hasattr(images, "detach") else images
        return torch.from_numpy(self.embed_arrays(np.asarray(array, dtype=np.float32), levels))


class FileBackend(EmbeddingBackend, ABC):
    """A runtime of an exported file whose metadata (written by ``rareid export``) states the
    rates, the sub-vector sizes, the preprocessing and the checkpoint it came from."""

    def __init__(self, metadata: dict[str, str], path: Path, expected_sha256: str | None) -> None:
        self.path = path
        self.metadata = metadata
        digest = metadata.get("rareid_checkpoint_sha256", "")
        if expected_sha256 and digest and digest != expected_sha256:
            raise ValueError(
                f"{str(path)!r} was exported from another checkpoint than the index was built "
                "with: export the index's checkpoint"
            )
        rates = json.loads(metadata.get("rareid_rates", "[]"))
        sizes = json.loads(metadata.get("rareid_split_sizes", "[]"))
        self.rates = [float(r) for r in rates] or None
        self.split_sizes = [int(s) for s in sizes] or None
        self.num_levels = len(rates) or None

    def embed_arrays(self, images: np.ndarray, levels: Any) -> np.ndarray:
        images = np.ascontiguousarray(images, dtype=np.float32)
        levels = as_level_array(levels, images.shape[0], self.num_levels)
        fixed = self.metadata.get("rareid_fixed_level")
        if fixed and levels.size and not np.all(levels == int(fixed)):
            raise ValueError(
                f"{str(self.path)!r} embeds at level {fixed} only (exported with --single-input "
                "--level): use the two-input export for other levels"
            )
        return np.asarray(self.run(images, levels), dtype=np.float32)

    @abstractmethod
    def run(self, images: np.ndarray, levels: np.ndarray) -> np.ndarray:
        """The file's graph on checked inputs."""


def embed_in_batches(
    runtime: EmbeddingBackend,
    images: Sequence[Any],
    preprocess: Any,
    levels: Any,
    batch_size: int = 64,
    arrays: bool = False,
) -> Any:
    """Embeddings of ``images`` (decoded crops or paths), ``batch_size`` at a time: a tensor
    through ``runtime.embed`` and ``preprocess``, or with ``arrays`` a NumPy array through
    ``runtime.embed_arrays`` and ``preprocess.arrays`` (no torch).

    Why: preprocessing and embedding a whole folder of queries at once holds every input and
    every activation together, which grows with the number of queries (thousands of crops at
    256x128 take tens of GB); one batch at a time keeps memory flat.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size}")
    levels = np.asarray(levels, dtype=np.int64).reshape(-1)
    if levels.size != len(images):
        raise ValueError(f"expected one level per image ({len(images)}), got {levels.size}")
    if not len(images):
        raise ValueError("no images to embed")
    starts = range(0, len(images), batch_size)
    if arrays:
        return np.concatenate(
            [
                runtime.embed_arrays(
                    preprocess.arrays(images[s : s + batch_size]), levels[s : s + batch_size]
                )
                for s in starts
            ]
        )
    import torch

    return torch.cat(
        [
            runtime.embed(
                preprocess(images[s : s + batch_size]),
                torch.from_numpy(levels[s : s + batch_size]),
            )
            for s in starts
        ]
    )


def runtime_class(name: str) -> type[EmbeddingBackend]:
    """The backend class of runtime ``name`` (a key of :data:`RUNTIMES`), imported now."""
    if name not in RUNTIMES:
        raise ValueError(f"runtime: unknown {name!r}; choose one of {sorted(RUNTIMES)}")
    module, attribute = RUNTIMES[name]
    return getattr(importlib.import_module(module), attribute)


def runtime_of_file(path: str | Path) -> str:
    """The runtime that runs an exported model: ``openvino`` for an IR (``.xml``), else
    ``onnx`` (an ``.onnx`` file, or a bundle folder holding ``model.onnx``)."""
    return "openvino" if Path(path).suffix.lower() == ".xml" else "onnx"


def open_file_runtime(
    path: str | Path, expected_sha256: str | None = None, threads: int | None = None
) -> FileBackend:
    """The backend of an exported model file, a bundle folder or a bundle's ``hf-hub:`` id
    (see :func:`runtime_of_file`); ``threads``: its CPU threads (default: the runtime's)."""
    from rareid.deploy.model.bundle import resolve_bundle

    path = resolve_bundle(path)
    cls = runtime_class(runtime_of_file(path))
    return cls(path, expected_sha256=expected_sha256, threads=threads)  # type: ignore[call-arg]


def as_backend(model: RAReIDModule | EmbeddingBackend) -> EmbeddingBackend:
    """``model`` itself if it is a backend, else the torch backend running it."""
    if isinstance(model, EmbeddingBackend):
        return model
    return runtime_class("torch")(model)  # type: ignore[call-arg]
