"""``rareid tracks index``: embed tracklets, from crop folders or a video with a tracker's MOT
file, into one index file (``--add`` brings in another camera or more tracks)."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from rareid.runs import OneLineArgumentParser


def build_parser() -> argparse.ArgumentParser:
    """The arguments of ``rareid tracks index`` (no torch imported)."""
    parser = OneLineArgumentParser(
        prog="rareid tracks index",
        description="Embed every frame of every tracklet at the level its crop's size implies "
        "and write one index file.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--tracks", help="folder of <camera>/<track_id>/*.jpg crops")
    source.add_argument("--video", help="a video file or a folder of frames (with --mot)")
    parser.add_argument("--mot", help="the tracker's MOTChallenge file for --video")
    parser.add_argument("--camera", help="camera name of --video (default: its file name)")
    parser.add_argument(
        "--min-conf",
        type=float,
        help="skip --mot boxes whose conf (column 7) is below this (counted)",
    )
    parser.add_argument(
        "--ground-truth",
        action="store_true",
        help="--mot is ground truth: conf 0 marks boxes to ignore (9-column files always are)",
    )
    parser.add_argument("--ckpt", required=True, help="checkpoint written by `rareid fit`")
    parser.add_argument("--out", required=True, help="index file to write, e.g. tracks.npz")
    parser.add_argument("--add", action="store_true", help="add to (or update) an existing --out")
    parser.add_argument(
        "--reference-height",
        type=float,
        help="height in px of a rate-1 crop (default: 95th percentile of the crops' heights)",
    )
    parser.add_argument("--device", default="cpu", help="torch device to embed on")
    parser.add_argument("--batch-size", type=int, default=64, help="crops embedded at once")
    return parser


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    from rareid.tracks.model import checkpoint_problem

    if args.video and not args.mot:
        parser.error("--video needs --mot FILE (the tracker's boxes in MOTChallenge format)")
    if args.mot and not args.video:
        parser.error("--mot is read with --video (crop folders need no MOT file)")
    if (args.min_conf is not None or args.ground_truth) and not args.mot:
        parser.error(
            "--min-conf and --ground-truth filter the boxes of --mot; pass --video and --mot"
        )
    if args.min_conf is not None and not math.isfinite(args.min_conf):
        parser.error(f"--min-conf: expected a number, got {args.min_conf}")
    if args.camera and not args.video:
        parser.error("--camera names the camera of --video; crop folders are named by folder")
    if problem := checkpoint_problem(args.ckpt):
        parser.error(problem)
    if Path(args.out).exists() and not args.add:
        parser.error(f"--out: {args.out!r} exists; pass --add to add to it")
    if args.reference_height is not None and not args.reference_height > 0:
        parser.error(f"--reference-height: expected a positive height, got {args.reference_height}")
    if args.batch_size < 1:
        parser.error(f"--batch-size: expected a positive integer, got {args.batch_size}")


def main(argv: Sequence[str]) -> int:
    """``rareid tracks index``: embed tracklets into an index file."""
    parser = build_parser()
    args = parser.parse_args(list(argv))
    _check(parser, args)
    from rareid.tracks.index import TrackIndex, TrackIndexError
    from rareid.tracks.model import file_sha256, load_model
    from rareid.tracks.readers import read_crop_tracks, read_video_tracks
    from rareid.tracks.tracklet import TrackInputError

    try:
        if args.tracks:
            tracks, report = read_crop_tracks(args.tracks)
        else:
            tracks, report = read_video_tracks(
                args.video,
                args.mot,
                args.camera,
                min_conf=args.min_conf,
                ground_truth=True if args.ground_truth else None,
            )
    except TrackInputError as error:
        parser.error(str(error))
    model, preprocess = load_model(args.ckpt, args.device)
    reference = None
    if args.reference_height:
        height = args.reference_height
        reference = (height, height * preprocess.img_size[1] / preprocess.img_size[0])
    out = Path(args.out)
    if args.add and out.exists():
        try:
            index = TrackIndex.load(out)
        except TrackIndexError as error:
            parser.error(f"--out: {error}")
        if index.checkpoint_sha256 != file_sha256(args.ckpt):
            parser.error(f"--ckpt: {args.ckpt!r} is not the checkpoint {args.out!r} was built with")
        if reference and abs(reference[0] - index.reference[0]) > 1e-6:
            parser.error(
                f"--reference-height: {args.out!r} was built with {index.reference[0]:g} px; "
                "one index keeps one reference (rebuild it to change it)"
            )
    else:
        index = TrackIndex.build(
            args.ckpt, [], reference, args.device, model_and_preprocess=(model, preprocess)
        )
    added, replaced = index.add_tracks(model, preprocess, tracks, reference, args.batch_size)
    index.problems += report.lines()
    index.save(out)
    for line in report.lines():
        print(f"rareid tracks index: {line}", file=sys.stderr)
    frames = sum(len(track) for track in tracks)
    levels = index.levels[-frames:] if frames else index.levels
    histogram = ", ".join(
        f"{level}: {int((levels == level).sum())}" for level in range(1, index.num_levels + 1)
    )
    print(
        f"indexed {added} new and {replaced} replaced tracklets ({frames} frames; levels "
        f"{histogram}) into {out}: {len(index)} tracklets in {len(set(index.cameras))} camera(s); "
        f"rate-1 crop {index.reference[0]:.0f}x{index.reference[1]:.0f} px"
    )
    return 0
