"""``rareid index``: the command line of :class:`rareid.deploy.gallery.index.GalleryIndex`.

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

from rareid.commands.arguments import cannot_write, checkpoint_problem
from rareid.commands.threads import add_threads_argument, threads_problem, use_threads
from rareid.runs import OneLineArgumentParser

#: Approximate-search index kinds (faiss ``index_factory`` families), see :mod:`rareid.deploy.gallery.ann`.
ANN_KINDS = ("ivf-flat", "hnsw", "ivf-pq")


def build_parser() -> argparse.ArgumentParser:
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
        "--rebase",
        action="store_true",
        help="with --add, when the gallery folder moved: index the new folder, keeping the "
        "embeddings of the files that are the same there",
    )
    parser.add_argument(
        "--backend",
        choices=("torch", "onnx"),
        default="torch",
        help="embedding runtime: the checkpoint in PyTorch, or an ONNX file (no Lightning)",
    )
    parser.add_argument(
        "--onnx",
        help="exported model for --backend onnx: an ONNX file of `rareid export`, an OpenVINO "
        ".xml, a bundle folder or hf-hub:ORG/NAME",
    )
    parser.add_argument(
        "--weights", help="a local bundle folder to use instead of an hf-hub:ORG/NAME model"
    )
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
    parser.add_argument(
        "--batch-size", type=int, default=64, help="images per forward pass (per device)"
    )
    parser.add_argument(
        "--num-workers",
        type=int,
        default=2,
        help="image-decoding worker processes (per device; 0: none)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="the device of a one-device run: cpu, cuda, cuda:1 ... (auto: GPU if any)",
    )
    add_device_arguments(parser)
    add_threads_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that spread the embedding over several devices and nodes."""
    parser.add_argument(
        "--devices",
        type=int,
        default=1,
        help="embed on N devices of this node through Lightning's predict loop (DDP), writing "
        "the same index as one device; 1: one device, no Lightning (see --device)",
    )
    parser.add_argument(
        "--num-nodes",
        type=int,
        default=1,
        help="nodes taking part, each running this same command with --devices N and its node "
        "rank from the launcher (NODE_RANK, torchrun or SLURM); node 0 writes the index",
    )
    parser.add_argument(
        "--accelerator",
        choices=("auto", "cpu", "gpu"),
        default="auto",
        help="with --devices or --num-nodes above 1: the kind of device (auto: GPU if any)",
    )
    parser.add_argument(
        "--strategy",
        choices=("ddp",),
        default="ddp",
        help="with --devices or --num-nodes above 1: Lightning's strategy (ddp runs this "
        "command once per device; its first process gathers the embeddings and writes)",
    )


def main(argv: Sequence[str]) -> int:
    """``rareid index``: embed a gallery folder into an index file (or ``--add`` to one)."""
    parser = build_parser()
    args = parser.parse_args(list(argv))
    if args.weights and args.onnx:  # the local copy of a hub bundle stands in for its id
        args.onnx = args.weights
    elif args.weights:
        args.ckpt = args.weights
    if args.batch_size < 1:
        parser.error(f"--batch-size: expected a positive integer, got {args.batch_size}")
    if problem := threads_problem(args.threads):
        parser.error(problem)
    if args.num_workers < 0:
        parser.error(f"--num-workers: expected 0 or more, got {args.num_workers}")
    if args.backend == "onnx" and not args.onnx:
        parser.error("--backend onnx needs --onnx MODEL.onnx (written by `rareid export`)")
    if args.backend == "torch" and not args.ckpt:
        parser.error("--ckpt: a checkpoint is needed (or --backend onnx --onnx MODEL.onnx)")
    if args.ckpt and (problem := checkpoint_problem(args.ckpt)):
        parser.error(problem)
    if args.onnx and not args.onnx.startswith("hf-hub:") and not Path(args.onnx).exists():
        parser.error(f"--onnx: {args.onnx!r} does not exist; write it with `rareid export`")
    _check_devices(parser, args)
    if args.backend == "torch" and args.devices * args.num_nodes == 1:
        from rareid.deploy.model.checks import device_problem

        if problem := device_problem(args.device):
            parser.error(problem)
    return _run(parser, args)


def _check_devices(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``--devices``, ``--num-nodes`` and the options that go with them."""
    for flag, value in (("--devices", args.devices), ("--num-nodes", args.num_nodes)):
        if value < 1:
            parser.error(f"{flag}: expected a positive integer, got {value}")
    if args.devices * args.num_nodes == 1:
        if args.accelerator != "auto":
            parser.error(
                "--accelerator applies with --devices or --num-nodes above 1; pick the one "
                "device with --device"
            )
        return
    if args.backend == "onnx":
        parser.error("--devices/--num-nodes embed with --ckpt (--backend torch); ONNX runs on one")
    if args.device != "auto":
        parser.error(
            "--device picks the device of a one-device run; with --devices or --num-nodes "
            "choose the kind with --accelerator cpu or gpu"
        )
    if args.accelerator == "gpu":
        import torch

        found = torch.cuda.device_count()
        if found < args.devices:
            have = f"only {found} GPU{'s' if found != 1 else ''}" if found else "no GPU"
            parser.error(
                f"--accelerator gpu: this machine has {have} for --devices {args.devices}; "
                "ask for fewer devices or embed with --accelerator cpu"
            )


def _follow_gallery(out: Path, gallery: str, rebase: bool) -> None:
    """Refuse ``--add`` on a gallery that moved, in one line; with ``--rebase`` point the
    index at the new folder first (the update then embeds only what differs)."""
    from rareid.deploy.gallery.index import GalleryIndex, GalleryIndexError
    from rareid.deploy.gallery.rebase import moved_gallery, moved_message
    from rareid.deploy.gallery.rebase import rebase as rebase_index

    index = GalleryIndex.load(out)
    if not moved_gallery(index, gallery):
        return
    if not rebase:
        raise GalleryIndexError(moved_message(index, gallery))
    report = rebase_index(index, gallery)
    index.save(out)
    print(report.describe())


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from rareid.deploy.gallery.index_file import GalleryIndexError
    from rareid.deploy.gallery.update import IndexLock, build_or_update, runs_without_torch
    from rareid.deploy.model.arrays import list_images
    from rareid.runs import UsageError

    out = Path(args.out)
    layout = None
    writer = True  # the process that locks and writes the index
    if args.devices * args.num_nodes > 1:
        from rareid.deploy.gallery.distributed import DeviceLayout, is_rank_zero
        from rareid.runtime import follow_launching_parent

        layout = DeviceLayout(args.devices, args.num_nodes, args.accelerator, args.strategy)
        writer = is_rank_zero()
        if not writer:
            follow_launching_parent()  # a rank started by this command's rank 0 dies with it
    try:
        paths = list_images(args.gallery)
    except FileNotFoundError as error:
        parser.error(f"--gallery: {error}")
    if not paths:
        parser.error(f"--gallery: no jpg/png/bmp/webp image under {args.gallery!r}")
    onnx = args.onnx if args.backend == "onnx" else None
    without_torch = runs_without_torch(args.add, onnx, args.ann, layout)
    use_threads(args.threads, len(paths), torch_threads=not without_torch)
    if args.rebase and not args.add:
        parser.error("--rebase applies with --add (an existing index whose gallery moved)")
    if args.rebase and layout is not None:
        parser.error("--rebase runs on one device: leave out --devices/--num-nodes")
    if args.add:
        if not out.is_file():
            parser.error(f"--add: index {str(out)!r} does not exist; build it first without --add")
    elif out.exists() and writer:
        parser.error(f"--out: {str(out)!r} exists; pass --add to extend it or remove it first")
    lock = None
    if writer:
        try:
            lock = IndexLock(out).acquire()
        except UsageError as error:
            parser.error(str(error))
        except OSError as error:  # the folder cannot be made or written
            parser.error(cannot_write("--out", out, error))
    try:
        if args.add and writer:
            _follow_gallery(out, args.gallery, args.rebase)
        summary = build_or_update(
            out,
            paths,
            gallery=args.gallery,
            add=args.add,
            checkpoint=args.ckpt,
            onnx=onnx,
            ann=args.ann,
            metric=args.metric,
            dtype=args.dtype,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            device=args.device,
            progress=not args.no_progress,
            layout=layout,
        )
    except PermissionError as error:
        parser.error(cannot_write("--out", out, error))
    except (GalleryIndexError, ValueError, OSError) as error:
        parser.error(str(error))
    finally:
        if lock is not None:
            lock.release()
    if summary is None:  # another rank than 0: rank 0 reports and writes
        return 0
    for item in summary.skipped:
        print(f"skipped {item.path}: {item.reason}", file=sys.stderr)
    print(f"{out}: {summary.describe()}")
    return 0
