"""``rareid export``: the command line of :mod:`rareid.deploy.model.exporters`.

The parser imports nothing heavy (no torch, no Lightning), so ``rareid export --help`` and usage
errors answer at once; the model and the exporters are imported after the arguments are read.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rareid.commands.arguments import checkpoint_problem
from rareid.commands.threads import add_threads_argument, threads_problem, use_threads
from rareid.runs import OneLineArgumentParser

FORMATS = ("onnx", "torch-export", "bundle", "openvino")


def build_parser() -> argparse.ArgumentParser:
    """The arguments of ``rareid export`` (built without importing torch)."""
    parser = OneLineArgumentParser(
        prog="rareid export",
        description="Export a checkpoint as a model of (images, levels) -> padded embeddings.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--ckpt", required=True, help="trained checkpoint (or a bundle folder)")
    add(
        "--format",
        choices=FORMATS,
        default="onnx",
        help="onnx: checked with onnxruntime on every level; torch-export: a .pt2 program; "
        "bundle: a folder of config.json, model.safetensors, model.onnx, README.md, SHA256SUMS; "
        "openvino: an OpenVINO IR (.xml + .bin; the openvino extra)",
    )
    add("--out", help="output file or folder (default: next to the checkpoint)")
    add("--overwrite", action="store_true", help="replace an existing output")
    add(
        "--single-input",
        action="store_true",
        help="with --level K: a model of images alone, every image embedded at level K (for "
        "runtimes that feed only the first input)",
    )
    add("--level", type=int, help="the level of --single-input (1..m)")
    add("--quantize", choices=("int8",), help="int8: onnxruntime static quantisation (QDQ)")
    add("--calibration", help="folder of crops that calibrate --quantize int8")
    add("--samples", type=int, default=512, help="calibration crops used (--quantize)")
    add(
        "--heldout",
        help="labels CSV (path,person,camera) of held-out crops: the per-level drift of "
        "--quantize / --format openvino, and the bundle card's per-level table",
    )
    add(
        "--max-drop",
        type=float,
        default=1.0,
        help="refuse to write when a level loses more rank-1 or mAP points than this",
    )
    add("--thresholds-from", help="a calibrated index whose thresholds the bundle carries")
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


def _check_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse contradictory options before anything is loaded."""
    if args.single_input != (args.level is not None):
        parser.error("--single-input and --level K go together (a one-input model of level K)")
    if args.single_input and (args.format != "onnx" or args.quantize):
        parser.error("--single-input writes a float32 ONNX model: use --format onnx, no --quantize")
    if args.quantize and args.format not in ("onnx", "openvino"):
        parser.error(f"--quantize applies to --format onnx or openvino, not {args.format}")
    if args.quantize and not (args.calibration and Path(args.calibration).is_dir()):
        parser.error("--quantize int8 needs --calibration DIR, a folder of typical crops")
    if args.samples < 1:
        parser.error(f"--samples: expected a positive number, got {args.samples}")
    if (args.quantize or args.format == "openvino") and not args.heldout:
        parser.error(
            "--heldout LABELS.csv is needed: the export is compared with float32 per level on "
            "held-out labelled crops (path,person,camera)"
        )
    if args.heldout and not Path(args.heldout).is_file():
        parser.error(f"--heldout: {args.heldout!r} does not exist")
    if not args.max_drop >= 0:
        parser.error(f"--max-drop: expected points >= 0, got {args.max_drop}")
    if args.thresholds_from and not Path(args.thresholds_from).is_file():
        parser.error(f"--thresholds-from: {args.thresholds_from!r} does not exist")


def _output(parser: argparse.ArgumentParser, args: argparse.Namespace, suffix: str) -> Path:
    """The checked output path (a folder for a bundle)."""
    if args.out:
        out = Path(args.out)
    elif suffix:
        stem = Path(args.ckpt.rstrip("/"))
        out = stem.with_suffix((".int8" if args.quantize else "") + suffix)
    else:
        out = (
            Path(args.ckpt.rstrip("/")).with_suffix("").with_name(Path(args.ckpt).stem + "_bundle")
        )
    if suffix and out.is_dir():
        parser.error(
            f"--out: {str(out)!r} is a folder; give a file name, e.g. {out / ('model' + suffix)}"
        )
    if out.exists() and not args.overwrite:
        parser.error(f"--out: {str(out)!r} exists; pass --overwrite to replace it")
    if problem := unwritable_folder(out.parent):
        parser.error(f"--out: cannot write {str(out)!r}: {problem}")
    return out


def _thresholds(index: str | None) -> dict[str, Any] | None:
    """The calibration stored in a calibrated index (``--thresholds-from``)."""
    if not index:
        return None
    from rareid.deploy.gallery.record import IndexRecord

    calibration = IndexRecord.load(index).calibration
    if not calibration:
        raise ValueError(
            f"--thresholds-from: {index!r} is not calibrated; run `rareid calibrate` on it first"
        )
    return calibration


def main(argv: Sequence[str]) -> int:
    """``rareid export``: ONNX (checked against PyTorch on every level), int8, OpenVINO, a
    bundle or torch.export."""
    parser = build_parser()
    args = parser.parse_args(list(argv))
    if problem := checkpoint_problem(args.ckpt) or threads_problem(args.threads):
        parser.error(problem)
    _check_options(parser, args)
    from rareid.deploy.model.exporters import EXPORTERS, DriftRefused, ExportRequest

    exporter, suffix = EXPORTERS[args.format]
    out = _output(parser, args, suffix)

    from rareid.deploy.model.backends import require_onnx
    from rareid.deploy.model.export import export_metadata
    from rareid.deploy.model.inference import checkpoint_facts, load_model

    use_threads(args.threads, 0)  # a few check batches: one thread unless asked
    try:
        if args.format != "torch-export":
            require_onnx()
        model, preprocess = load_model(args.ckpt, "cpu")
        digest, level_policy, _ = checkpoint_facts(args.ckpt)
        request = ExportRequest(
            checkpoint=Path(args.ckpt),
            out=out,
            metadata=export_metadata(model, preprocess, digest, level_policy=level_policy),
            level=args.level,
            quantize=args.quantize,
            calibration=Path(args.calibration) if args.calibration else None,
            samples=args.samples,
            heldout=Path(args.heldout) if args.heldout else None,
            max_drop=args.max_drop,
            calibration_thresholds=_thresholds(args.thresholds_from),
        )
        lines = exporter(model, preprocess, request)
    except DriftRefused as refusal:
        print(f"rareid export: error: {refusal}", file=sys.stderr)
        return 1
    except (ImportError, ValueError, OSError) as error:
        parser.error(str(error))
    print("\n".join(lines))
    return 0
