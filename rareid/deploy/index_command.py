"""``rareid index``: the command line of :class:`rareid.deploy.index.GalleryIndex`.

The parser imports nothing heavy (no torch, no Lightning), so ``rareid index --help`` and usage
errors answer at once; the index, the model and the runtimes are imported after the arguments
are read. The index file is written under a lock beside it (``.NAME.lock``): a second
``rareid index`` on the same file is refused with one line while the first runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rareid.runs import OneLineArgumentParser

#: Approximate-search index kinds (faiss ``index_factory`` families), see :mod:`rareid.deploy.ann`.
ANN_KINDS = ("ivf-flat", "hnsw", "ivf-pq")


def index_parser() -> argparse.ArgumentParser:
    """The arguments of ``rareid index`` (built without importing torch)."""
    parser = OneLineArgumentParser(
        prog="rareid index",
        description="Embed every image under a gallery folder (HR level) into an index file.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--ckpt", help="trained checkpoint (.ckpt); needed unless --backend onnx")
    parser.add_argument("--gallery", required=True, help="folder of gallery crops (recursive)")
    parser.add_argument("--out", required=True, help="index file to write, e.g. gallery.npz")
    parser.add_argument(
        "--add",
        action="store_true",
        help="update an existing index: embed new images, re-embed changed ones (size or "
        "modification time), drop the ones deleted from the gallery folder",
    )
    parser.add_argument(
        "--backend",
        choices=("torch", "onnx"),
        default="torch",
        help="embedding runtime: the checkpoint in PyTorch, or an ONNX file (no Lightning)",
    )
    parser.add_argument("--onnx", help="ONNX model written by `rareid export` (--backend onnx)")
    parser.add_argument(
        "--metric",
        choices=("euclidean", "cosine"),
        help="--backend onnx: the model's distance, for a file that does not record it",
    )
    parser.add_argument(
        "--ann",
        choices=ANN_KINDS,
        default=None,
        help="also build an approximate-search index (faiss) for large galleries",
    )
    parser.add_argument(
        "--dtype",
        choices=("float32", "float16"),
        default=None,
        help="storage of the gallery embeddings in the file (float16: half the size); "
        "default: float32, or the index's own with --add",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    parser.add_argument(
        "--num-workers", type=int, default=2, help="image-decoding worker processes (0: none)"
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (auto: GPU if any)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def index_main(argv: Sequence[str]) -> int:
    """``rareid index``: embed a gallery folder into an index file (or ``--add`` to one)."""
    parser = index_parser()
    args = parser.parse_args(list(argv))
    if args.batch_size < 1:
        parser.error(f"--batch-size: expected a positive integer, got {args.batch_size}")
    if args.num_workers < 0:
        parser.error(f"--num-workers: expected 0 or more, got {args.num_workers}")
    if args.backend == "onnx" and not args.onnx:
        parser.error("--backend onnx needs --onnx MODEL.onnx (written by `rareid export`)")
    if args.backend == "torch" and not args.ckpt:
        parser.error("--ckpt: a checkpoint is needed (or --backend onnx --onnx MODEL.onnx)")
    if args.ckpt and not Path(args.ckpt).is_file():
        parser.error(f"--ckpt: checkpoint {args.ckpt!r} does not exist")
    if args.onnx and not Path(args.onnx).is_file():
        parser.error(f"--onnx: {args.onnx!r} does not exist; write it with `rareid export`")
    if args.backend == "torch":
        from rareid.deploy.checks import device_problem

        if problem := device_problem(args.device):
            parser.error(problem)
    return _run(parser, args)


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from rareid.deploy.index import GalleryIndexError
    from rareid.deploy.index_update import IndexLock, build_or_update
    from rareid.deploy.inference import list_images
    from rareid.runs import UsageError

    out = Path(args.out)
    try:
        paths = list_images(args.gallery)
    except FileNotFoundError as error:
        parser.error(f"--gallery: {error}")
    if not paths:
        parser.error(f"--gallery: no jpg/png/bmp/webp image under {args.gallery!r}")
    if args.add:
        if not out.is_file():
            parser.error(f"--add: index {str(out)!r} does not exist; build it first without --add")
    elif out.exists():
        parser.error(f"--out: {str(out)!r} exists; pass --add to extend it or remove it first")
    try:
        lock = IndexLock(out).acquire()
    except UsageError as error:
        parser.error(str(error))
    try:
        summary = build_or_update(
            out,
            paths,
            gallery=args.gallery,
            add=args.add,
            checkpoint=args.ckpt,
            onnx=args.onnx if args.backend == "onnx" else None,
            ann=args.ann,
            metric=args.metric,
            dtype=args.dtype,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            device=args.device,
            progress=not args.no_progress,
        )
    except (GalleryIndexError, ValueError, OSError) as error:
        parser.error(str(error))
    finally:
        lock.release()
    for item in summary.skipped:
        print(f"skipped {item.path}: {item.reason}", file=sys.stderr)
    print(f"{out}: {summary.describe()}")
    return 0
