"""Export a trained model for serving: ONNX (checked with onnxruntime) or ``torch.export``.

The exported graph takes ``images`` (N, 3, H, W) float32 and ``levels`` (N,) int64 (1..m,
dynamic batch) and returns the zero-padded embeddings (N, d): the resolution masks of each
sample's level and the padding are inside the graph, so a serving stack needs nothing from
rareid. Levels outside 1..m are checked by :class:`OnnxEmbedder` before the graph runs (the
graph itself has no error path). The checkpoint's SHA-256, rates, sub-vector sizes, input size
and normalisation are stored as ONNX metadata.
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

from rareid.deploy.backends import OnnxBackend, require_onnx
from rareid.runs import OneLineArgumentParser

if TYPE_CHECKING:
    from rareid.deploy.inference import Preprocess
    from rareid.models.module import RAReIDModule

ExportFormat = Literal["onnx", "torch-export"]
#: Agreement required between onnxruntime and PyTorch in float32.
ONNX_TOLERANCE = 1e-4
#: The ONNX runtime of :mod:`rareid.deploy.backends`, under the name it had before.
OnnxEmbedder = OnnxBackend


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
    model: RAReIDModule, preprocess: Preprocess, checkpoint_sha256: str = ""
) -> dict[str, str]:
    return {
        "rareid_checkpoint_sha256": checkpoint_sha256,
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
    """Write the model (eval mode, dynamic batch) as one ONNX file."""
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
    program.save(str(out))
    proto = onnx.load(str(out))
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(out))
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
    embedder = OnnxEmbedder(path)
    differences = {}
    model = model.cpu().eval()
    for level in range(1, model.num_levels + 1):
        images, _ = _example(model, per_level + 1)
        levels = torch.full((per_level + 1,), level, dtype=torch.long)
        expected = model.embed(images, levels)
        got = embedder.embed(images, levels)
        differences[level] = float((expected - got).abs().max())
    return differences


def unwritable_folder(folder: Path) -> str | None:
    """Why files cannot be written in ``folder`` (created on write if missing), or None."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{str(existing)!r} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"the folder {str(existing)!r} is not writable"
    return None


def export_main(argv: Sequence[str]) -> int:
    """``rareid export``: ONNX (checked against PyTorch on every level) or torch.export."""
    parser = OneLineArgumentParser(
        prog="rareid export",
        description="Export a checkpoint as a model of (images, levels) -> padded embeddings.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--ckpt", required=True, help="trained checkpoint")
    parser.add_argument(
        "--format",
        choices=("onnx", "torch-export"),
        default="onnx",
        help="onnx: checked with onnxruntime on every level; torch-export: a .pt2 program",
    )
    parser.add_argument("--out", help="output file (default: next to the checkpoint)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file")
    args = parser.parse_args(list(argv))

    from rareid.deploy.checks import check_finite_model
    from rareid.deploy.inference import file_sha256, load_model

    if not Path(args.ckpt).is_file():
        parser.error(f"--ckpt: checkpoint {args.ckpt!r} does not exist")
    suffix = ".onnx" if args.format == "onnx" else ".pt2"
    out = Path(args.out) if args.out else Path(args.ckpt).with_suffix(suffix)
    if out.is_dir():
        parser.error(
            f"--out: {str(out)!r} is a folder; give a file name, e.g. {out / ('model' + suffix)}"
        )
    if out.exists() and not args.overwrite:
        parser.error(f"--out: {str(out)!r} exists; pass --overwrite to replace it")
    problem = unwritable_folder(out.parent)
    if problem:
        parser.error(f"--out: cannot write {str(out)!r}: {problem}")
    try:
        if args.format == "onnx":
            require_onnx()
        model, preprocess = load_model(args.ckpt, "cpu")
        check_finite_model(model, args.ckpt)
        if args.format == "torch-export":
            export_torch(model, out)
            print(f"wrote {out} (torch.export.load(path).module()(images, levels))")
            return 0
        metadata = export_metadata(model, preprocess, file_sha256(args.ckpt))
        export_onnx(model, out, metadata)
        differences = check_onnx(model, out)
    except (ImportError, ValueError, OSError) as error:
        parser.error(str(error))
    worst = max(differences.values())
    cells = ", ".join(f"level {level}: {value:.2e}" for level, value in differences.items())
    status = "passed" if worst <= ONNX_TOLERANCE else "FAILED"
    print(f"wrote {out}; onnxruntime vs PyTorch max abs difference {cells}")
    print(f"check {status} (tolerance {ONNX_TOLERANCE:g} in float32)")
    return 0 if worst <= ONNX_TOLERANCE else 1
