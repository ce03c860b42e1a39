"""Export a trained model for serving: ONNX (checked with onnxruntime) or ``torch.export``.

The exported graph takes ``images`` (N, 3, H, W) float32 and ``levels`` (N,) int64 (1..m,
dynamic batch) and returns the zero-padded embeddings (N, d): the resolution masks of each
sample's level and the padding are inside the graph, so a serving stack needs nothing from
rareid. Levels outside 1..m are checked by :class:`~rareid.deploy.model.backend_onnx.OnnxBackend` before the graph runs (the
graph itself has no error path). The checkpoint's SHA-256, rates, sub-vector sizes, input size
and normalisation are stored as ONNX metadata. The command line is
:mod:`rareid.commands.export`.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

from rareid.deploy.model.backend_onnx import OnnxBackend
from rareid.deploy.model.backends import require_onnx

if TYPE_CHECKING:
    from rareid.deploy.model.inference import Preprocess
    from rareid.models.module import RAReIDModule

ExportFormat = Literal["onnx", "torch-export"]
#: Agreement required between onnxruntime and PyTorch in float32.
ONNX_TOLERANCE = 1e-4


class LevelEmbedder(nn.Module):
    """``RAReIDModule.embed`` without its Python-side checks, so that it traces into one graph."""

    def __init__(self, model: RAReIDModule) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        model = self.model
        if model.masks is None:
            vectors = model.head(model.backbone(images))
        else:
            with model.masks.levels(levels - 1):
                vectors = model.head(model.backbone(images))
        return model.pad(vectors, levels)


class FixedLevelEmbedder(nn.Module):
    """:class:`LevelEmbedder` at one level, for runtimes that feed a model only its first
    input (``images``): the level is a constant of the graph."""

    def __init__(self, model: RAReIDModule, level: int) -> None:
        super().__init__()
        if not 1 <= int(level) <= model.num_levels:
            raise ValueError(
                f"--level: expected 1..{model.num_levels} (rates {list(model.rates)}), got {level}"
            )
        self.inner = LevelEmbedder(model)
        self.level = int(level)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        levels = torch.full((images.shape[0],), self.level, dtype=torch.long)
        return self.inner(images, levels)


def _example(model: RAReIDModule, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    height, width = (int(s) for s in model.hparams.img_size)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, height, width, generator=generator)
    levels = (torch.arange(batch) % model.num_levels + 1).long()
    return images, levels


def export_metadata(
    model: RAReIDModule,
    preprocess: Preprocess,
    checkpoint_sha256: str = "",
    level_policy: str = "nearest",
) -> dict[str, str]:
    """What an index built from the ONNX file alone needs: rates, sub-vectors, preprocessing,
    the distance and the level policy, and the checkpoint it came from."""
    return {
        "rareid_checkpoint_sha256": checkpoint_sha256,
        "rareid_distance": str(model.hparams.distance),
        "rareid_level_policy": str(level_policy),
        "rareid_rates": json.dumps([float(r) for r in model.rates]),
        "rareid_split_sizes": json.dumps([int(s) for s in model.distance_split_sizes]),
        "rareid_img_size": json.dumps(list(preprocess.img_size)),
        "rareid_mean": json.dumps(list(preprocess.mean)),
        "rareid_std": json.dumps(list(preprocess.std)),
    }


def export_onnx(
    model: RAReIDModule,
    out: str | Path,
    metadata: dict[str, str] | None = None,
    opset: int = 18,
    level: int | None = None,
) -> Path:
    """Write the model (eval mode, dynamic batch) as one ONNX file; ``level``: a one-input model
    (``images`` only) that embeds every image at that level.

    Examples::

        model, preprocess = load_model("last.ckpt")
        metadata = export_metadata(model, preprocess, file_sha256("last.ckpt"))
        export_onnx(model, "model.onnx", metadata)
    """
    require_onnx()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1)
    images, levels = _example(model.cpu().eval())
    if level is None:
        wrapper: nn.Module = LevelEmbedder(model).eval()
        inputs, names, shapes = (images, levels), ["images", "levels"], ({0: batch}, {0: batch})
        metadata = dict(metadata or {})
    else:
        wrapper = FixedLevelEmbedder(model, level).eval()
        inputs, names, shapes = (images,), ["images"], ({0: batch},)
        metadata = {**(metadata or {}), "rareid_fixed_level": str(int(level))}
    with torch.no_grad(), warnings.catch_warnings():
        # images and levels share one batch dimension on purpose; torch notes it once
        warnings.filterwarnings("ignore", message=".*will not be used, since it shares")
        program = torch.onnx.export(
            wrapper,
            inputs,
            dynamo=True,
            input_names=names,
            output_names=["embeddings"],
            dynamic_shapes=shapes,
            opset_version=opset,
            verbose=False,
        )
    from rareid.runs import TEMP_PREFIX

    # Staged beside the output and renamed over it: an interrupted export or a full disk
    # leaves no partial model.onnx that a rerun would refuse to replace.
    staged = out.parent / f"{TEMP_PREFIX}{out.name}"
    try:
        program.save(str(staged))
        write_stamped(staged, out, metadata)
    finally:
        staged.unlink(missing_ok=True)
    return out


def write_stamped(source: str | Path, out: str | Path, metadata: dict[str, str]) -> Path:
    """Write the ONNX model ``source`` to ``out`` (atomically) with ``metadata`` and the hash of
    its weights, which loading checks (:mod:`~rareid.deploy.model.onnx_integrity`)."""
    import onnx

    from rareid.deploy.model.onnx_integrity import WEIGHTS_KEY, weights_sha256
    from rareid.runs import atomic_write

    proto = onnx.load(str(source))
    del proto.metadata_props[:]
    for key, value in {**metadata, WEIGHTS_KEY: weights_sha256(proto)}.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    data = proto.SerializeToString()
    atomic_write(Path(out), lambda handle: handle.write(data))
    return Path(out)


def export_torch(model: RAReIDModule, out: str | Path) -> Path:
    """Write a ``torch.export`` program (``.pt2``, dynamic batch), loadable with
    ``torch.export.load(path).module()``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    wrapper = LevelEmbedder(model.cpu().eval()).eval()
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad():
        program = torch.export.export(
            wrapper, _example(model), dynamic_shapes=({0: batch}, {0: batch})
        )
    torch.export.save(program, str(out))
    return out


def check_onnx(
    model: RAReIDModule, path: str | Path, per_level: int = 2, only_level: int | None = None
) -> dict[int, float]:
    """Max abs difference between onnxruntime and PyTorch, per level (``only_level``: that
    one only), on random inputs with a batch size other than the one exported (dynamic batch
    exercised)."""
    embedder = OnnxBackend(path)
    differences = {}
    model = model.cpu().eval()
    for level in [only_level] if only_level else range(1, model.num_levels + 1):
        images, _ = _example(model, per_level + 1)
        levels = torch.full((per_level + 1,), level, dtype=torch.long)
        expected = model.embed(images, levels)
        got = embedder.embed(images, levels)
        differences[level] = float((expected - got).abs().max())
    return differences
