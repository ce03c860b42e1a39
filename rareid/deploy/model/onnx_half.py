"""Half-precision ONNX files and their check against the float32 export, level by level.

:func:`half_weights` rewrites a float32 file written by ``rareid export`` so that every float32
weight is stored as float16 and cast back to float32 where it is used: the file is half the
size, it runs on any onnxruntime provider (CPU included, whose float16 kernels are few), and
the only change to the embeddings is the rounding of the weights. :func:`compare_exports` embeds
the same crops through both files at every level and reports the largest difference and the
top-k agreement of the rankings they give, which is what a deployment acts on.

    python -m rareid.deploy.model.onnx_half --onnx model.onnx --out model-fp16.onnx
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rareid.deploy.model.backend_onnx import OnnxBackend
from rareid.deploy.model.backends import require_onnx
from rareid.levels import prefix_lengths
from rareid.runs import OneLineArgumentParser


def half_weights(source: str | Path, out: str | Path) -> Path:
    """Write ``source`` with its float32 initializers stored as float16 (cast back on load)."""
    onnx, _ = require_onnx()
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    kept, casts = [], []
    for initializer in graph.initializer:
        if initializer.data_type != TensorProto.FLOAT:
            kept.append(initializer)
            continue
        values = numpy_helper.to_array(initializer)
        half = numpy_helper.from_array(values.astype(np.float16), f"{initializer.name}__fp16")
        kept.append(half)
        casts.append(
            helper.make_node(
                "Cast",
                [half.name],
                [initializer.name],
                to=TensorProto.FLOAT,
                name=f"{initializer.name}__to_fp32",
            )
        )
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend([*casts, *nodes])
    # The weights changed on purpose: record their new hash, or loading would refuse them.
    from rareid.deploy.model.onnx_integrity import WEIGHTS_KEY, weights_sha256

    for entry in model.metadata_props:
        if entry.key == WEIGHTS_KEY:
            entry.value = weights_sha256(model)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return out


@dataclass
class LevelAgreement:
    """How a float16 file's embeddings and rankings differ from the float32 file's at one level."""

    level: int
    max_difference: float
    top_k_agreement: float  # share of the float32 top-k that the float16 top-k holds


def compare_exports(
    full: str | Path, half: str | Path, images: torch.Tensor, k: int = 10
) -> list[LevelAgreement]:
    """Embed ``images`` at every level through both files; rank the crops among themselves
    (each one a query against all the others at that level) and compare the top-``k`` lists."""
    reference, rounded = OnnxBackend(full), OnnxBackend(half)
    levels = reference.num_levels or 1
    sizes = reference.split_sizes or [images.shape[0]]
    bounds = prefix_lengths(sizes)
    rows = images.shape[0]
    k = max(1, min(k, rows - 1))
    report = []
    for level in range(1, levels + 1):
        tags = torch.full((rows,), level, dtype=torch.long)
        a = reference.embed(images, tags)[:, : bounds[level - 1]]
        b = rounded.embed(images, tags)[:, : bounds[level - 1]]
        agreement = []
        for first, second in ((a, a), (b, b)):
            distance = torch.cdist(first, second)
            distance.fill_diagonal_(float("inf"))
            agreement.append(torch.topk(distance, k, dim=1, largest=False).indices)
        shared = sum(
            len(set(x.tolist()) & set(y.tolist()))
            for x, y in zip(agreement[0], agreement[1], strict=True)
        )
        report.append(
            LevelAgreement(level, float((a - b).abs().max()), shared / agreement[0].numel())
        )
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Write the float16 file and print, per level, the largest difference and agreement."""
    parser = OneLineArgumentParser(
        prog="python -m rareid.deploy.model.onnx_half",
        description="Store an exported ONNX model's weights in float16 and check it per level.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--onnx", required=True, help="float32 file written by `rareid export`")
    parser.add_argument("--out", required=True, help="float16 file to write")
    parser.add_argument("--crops", type=int, default=64, help="random crops compared per level")
    parser.add_argument("--k", type=int, default=10, help="top-k of the ranking agreement")
    args = parser.parse_args(argv)
    if not Path(args.onnx).is_file():
        parser.error(f"--onnx: {args.onnx!r} does not exist; write it with `rareid export`")
    if Path(args.out).exists():
        parser.error(f"--out: {args.out!r} exists; remove it or choose another name")
    half_weights(args.onnx, args.out)
    backend = OnnxBackend(args.onnx)
    height, width = (int(v) for v in backend.metadata["rareid_img_size"].strip("[]").split(","))
    images = torch.randn(args.crops, 3, height, width, generator=torch.Generator().manual_seed(0))
    for row in compare_exports(args.onnx, args.out, images, args.k):
        print(
            f"level {row.level}: max abs difference {row.max_difference:.2e}, top-{args.k} "
            f"agreement {100 * row.top_k_agreement:.1f}%"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
