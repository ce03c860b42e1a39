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
) -> Path:
    """Write the model (eval mode, dynamic batch) as one ONNX file.

    Examples::

        model, preprocess = load_model("last.ckpt")
        metadata = export_metadata(model, preprocess, file_sha256("last.ckpt"))
        export_onnx(model, "model.onnx", metadata)
    """
    onnx, _ = require_onnx()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    wrapper = LevelEmbedder(model.cpu().eval()).eval()
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad(), warnings.catch_warnings():
        # images and levels share one batch dimension on purpose; torch notes it once
        warnings.filterwarnings("ignore", message=".*will not be used, since it shares")
        program = torch.onnx.export(
            wrapper,
            _example(model),
            dynamo=True,
            input_names=["images", "levels"],
            output_names=["embeddings"],
            dynamic_shapes=({0: batch}, {0: batch}),
            opset_version=opset,
            verbose=False,
        )
    from rareid.deploy.model.onnx_integrity import WEIGHTS_KEY, weights_sha256
    from rareid.runs import TEMP_PREFIX, atomic_write

    # Staged beside the output and renamed over it: an interrupted export or a full disk
    # leaves no partial model.onnx that a rerun would refuse to replace.
    staged = out.parent / f"{TEMP_PREFIX}{out.name}"
    try:
        program.save(str(staged))
        proto = onnx.load(str(staged))
        for key, value in {**(metadata or {}), WEIGHTS_KEY: weights_sha256(proto)}.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        data = proto.SerializeToString()
        atomic_write(out, lambda handle: handle.write(data))
    finally:
        staged.unlink(missing_ok=True)
    return out


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


def check_onnx(model: RAReIDModule, path: str | Path, per_level: int = 2) -> dict[int, float]:
    """Max abs difference between onnxruntime and PyTorch, per level, on random inputs with a
    batch size other than the one exported (dynamic batch exercised)."""
    embedder = OnnxBackend(path)
    differences = {}
    model = model.cpu().eval()
    for level in range(1, model.num_levels + 1):
        images, _ = _example(model, per_level + 1)
        levels = torch.full((per_level + 1,), level, dtype=torch.long)
        expected = model.embed(images, levels)
        got = embedder.embed(images, levels)
        differences[level] = float((expected - got).abs().max())
    return differences
