"""``rareid serve``: the review page of ``rareid search --html`` with a drop zone for new query
crops, and ``POST /api/search`` for other programs (OpenAPI at ``/openapi.json``).

Built on the standard library's ``ThreadingHTTPServer`` (:mod:`rareid.deploy.serve.server`): one
reviewer on one machine needs no ASGI stack, and nothing extra to install keeps the command
usable on the offline machines rareid targets. Binds 127.0.0.1 unless ``--host`` says
otherwise. The parser imports nothing heavy, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rareid.commands.arguments import checkpoint_problem
from rareid.commands.search_run import DEFAULT_SEARCH_FAR
from rareid.runs import OneLineArgumentParser


def build_parser() -> argparse.ArgumentParser:
    """The arguments of ``rareid serve`` (built without importing torch)."""
    parser = OneLineArgumentParser(
        prog="rareid serve",
        description="Serve the review page with an upload drop zone and a JSON search API "
        "(/api/search, described at /openapi.json) over a gallery index; the index is "
        "reloaded when its file changes (rareid index --add, rareid calibrate).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--index", required=True, help="index file written by `rareid index`")
    add("--ckpt", help="checkpoint (default: the one the index was built with)")
    add("--onnx", help="embed queries with this ONNX model of `rareid export` instead")
    add("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    add("--port", type=int, default=8765, help="port to listen on (0: any free port)")
    add("--top-k", type=int, default=10, help="matches per query unless a request asks")
    add(
        "--far",
        type=float,
        help="per-pair FAR of the verdicts (default: the calibration's --far-per-search one, "
        f"else {DEFAULT_SEARCH_FAR:g})",
    )
    add("--max-upload-mb", type=float, default=20.0, help="largest upload accepted")
    add("--device", default="auto", help="torch device to embed queries on (auto, cpu, cuda)")
    return parser


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.ckpt and args.onnx:
        parser.error("--ckpt and --onnx both given: choose one")
    if not 0 <= args.port <= 65535:
        parser.error(f"--port: expected 0..65535, got {args.port}")
    if args.top_k < 1:
        parser.error(f"--top-k: expected a positive integer, got {args.top_k}")
    if args.far is not None and not 0 < args.far < 1:
        parser.error(f"--far: expected a rate in (0, 1), got {args.far}")
    if not args.max_upload_mb > 0:
        parser.error(f"--max-upload-mb: expected a positive size, got {args.max_upload_mb}")
    if not args.onnx:
        from rareid.deploy.model.checks import device_problem

        if problem := device_problem(args.device):
            parser.error(problem)


def _runtime(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """The embedding backend of the index's model (checked against the index's hash)."""
    from rareid.deploy.gallery.index import GalleryIndex, GalleryIndexError
    from rareid.deploy.model.backends import as_backend, open_file_runtime
    from rareid.deploy.model.checks import resolve_device
    from rareid.deploy.model.inference import file_sha256, load_model

    try:
        index = GalleryIndex.load(args.index)
    except (FileNotFoundError, GalleryIndexError) as error:
        parser.error(f"--index: {error}")
    if len(index) == 0:
        parser.error(f"--index: {args.index!r} holds no image")
    try:
        if args.onnx:
            return index, open_file_runtime(args.onnx, expected_sha256=index.checkpoint_sha256)
        ckpt = args.ckpt or index.checkpoint_path
        if not ckpt:
            parser.error(f"--onnx: {args.index!r} was built with an ONNX model; pass --onnx MODEL")
        if problem := checkpoint_problem(ckpt):
            parser.error(problem + ("" if args.ckpt else " (the index's checkpoint; pass --ckpt)"))
        if file_sha256(ckpt) != index.checkpoint_sha256:
            parser.error(f"--ckpt: {ckpt!r} is not the checkpoint the index was built with")
        return index, as_backend(load_model(ckpt, resolve_device(args.device))[0])
    except (ImportError, ValueError, OSError) as error:
        parser.error(str(error))


def main(argv: Sequence[str]) -> int:
    """``rareid serve``: serve until interrupted (Ctrl-C), then exit 0."""
    parser = build_parser()
    args = parser.parse_args(list(argv))
    _check(parser, args)
    index, runtime = _runtime(parser, args)
    from rareid.commands.search_sheet import calibration_caption
    from rareid.deploy.serve.engine import Matcher
    from rareid.deploy.serve.server import ReviewServer, is_loopback

    try:
        matcher = Matcher(args.index, runtime, args.far, DEFAULT_SEARCH_FAR)
    except ValueError as error:
        parser.error(f"--index: {error}")
    far = matcher.far_of(matcher.snapshot)
    caption = calibration_caption(index.calibration, index.num_levels, far)
    try:
        server = ReviewServer(
            (args.host, args.port),
            matcher,
            title=f"rareid serve: {Path(args.index).name} ({len(index)} images)",
            caption=caption + "; the page follows the index's calibration when it changes",
            top_k=args.top_k,
            max_upload=int(args.max_upload_mb * 1024 * 1024),
        )
    except OSError as error:
        parser.error(
            f"--port: cannot listen on {args.host}:{args.port} ({error.strerror or error}); "
            "pick another --port (0: any free one)"
        )
    host, port = server.server_address[:2]
    if not is_loopback(args.host):
        print(
            f"rareid serve: listening on {args.host}: anyone who can reach this machine can "
            "search the gallery and see its images",
            file=sys.stderr,
        )
    shown = f"[{host}]" if ":" in str(host) else host
    print(f"serving {args.index} ({len(index)} images) on http://{shown}:{port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
