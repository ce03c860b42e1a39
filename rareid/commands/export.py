"""``rareid export``: the command line of :mod:`rareid.deploy.model.export`.

The parser imports nothing heavy (no torch, no Lightning), so ``rareid export --help`` and usage
errors answer at once; the model and the exporters are imported after the arguments are read.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from rareid.commands.arguments import checkpoint_problem
from rareid.commands.threads import add_threads_argument, threads_problem, use_threads
from rareid.runs import OneLineArgumentParser


def build_parser() -> argparse.ArgumentParser:
    """The arguments of ``rareid export`` (built without importing torch)."""
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
    add_threads_argument(parser)
    return parser


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


def main(argv: Sequence[str]) -> int:
    """``rareid export``: ONNX (checked against PyTorch on every level) or torch.export."""
    parser = build_parser()
    args = parser.parse_args(list(argv))

    if problem := checkpoint_problem(args.ckpt) or threads_problem(args.threads):
        parser.error(problem)
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

    from rareid.deploy.model.backends import require_onnx
    from rareid.deploy.model.export import (
        ONNX_TOLERANCE,
        check_onnx,
        export_metadata,
        export_onnx,
        export_torch,
    )
    from rareid.deploy.model.inference import file_sha256, load_model, read_checkpoint

    use_threads(args.threads, 0)  # a few check batches: one thread unless asked
    try:
        if args.format == "onnx":
            require_onnx()
        model, preprocess = load_model(args.ckpt, "cpu")
        if args.format == "torch-export":
            export_torch(model, out)
            print(f"wrote {out} (torch.export.load(path).module()(images, levels))")
            return 0
        data = read_checkpoint(args.ckpt).get("datamodule_hyper_parameters") or {}
        metadata = export_metadata(
            model,
            preprocess,
            file_sha256(args.ckpt),
            level_policy=str(data.get("level_policy") or "nearest"),
        )
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
