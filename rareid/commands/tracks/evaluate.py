"""``rareid tracks evaluate``: the ``mlr-video`` protocol on a video re-ID dataset (MARS,
DukeMTMC-VideoReID, iLIDS-VID, PRID2011): rank-1 and mAP per schedule and pooling, against
single-frame matching, over trials (mean ± std)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from rareid.runs import OneLineArgumentParser
from rareid.tracks.match import DEFAULT_MIN_FRAMES
from rareid.tracks.pooling import POOLINGS

DATASETS = ("mars", "dukevideo", "ilidsvid", "prid2011")
SCHEDULE_NAMES = ("constant", "random", "ramp")


def build_parser() -> argparse.ArgumentParser:
    """The arguments of ``rareid tracks evaluate`` (no torch imported)."""
    parser = OneLineArgumentParser(
        prog="rareid tracks evaluate",
        description="Query tracklets degraded frame by frame by a schedule against HR gallery "
        "tracklets: rank-1 and mAP per schedule and pooling, and single-frame matching.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--dataset", required=True, choices=DATASETS, help="video dataset layout")
    add("--root", required=True, help="folder holding the dataset")
    add("--ckpt", required=True, help="checkpoint written by `rareid fit`")
    add(
        "--schedules",
        nargs="+",
        choices=SCHEDULE_NAMES,
        default=list(SCHEDULE_NAMES),
        help="per-frame rate schedules of the queries",
    )
    add("--poolings", nargs="+", choices=POOLINGS, default=list(POOLINGS), help="poolings compared")
    add("--trials", type=int, default=10, help="trials (random draws of rates and frames)")
    add("--seed", type=int, default=0, help="seed of the draws")
    add(
        "--split-index",
        type=int,
        default=0,
        help="iLIDS-VID / PRID2011: which split of the release's split file (0..9)",
    )
    add(
        "--split-seed",
        type=int,
        default=0,
        help="iLIDS-VID / PRID2011 without a split file: seed of the random half split",
    )
    add("--max-frames", type=int, default=16, help="frames read per tracklet (evenly spaced)")
    add("--min-frames", type=int, default=DEFAULT_MIN_FRAMES, help="frames a level needs")
    add("--out", help="JSON file for the per-trial scores and their summary")
    return parser


def main(argv: Sequence[str]) -> int:
    """``rareid tracks evaluate``: the mlr-video protocol on a dataset."""
    parser = build_parser()
    args = parser.parse_args(list(argv))
    for option in ("trials", "max_frames", "min_frames"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')}: expected a positive integer")
    if args.split_index < 0:
        parser.error("--split-index: expected a split number from 0")
    from rareid.data.readers.base import DatasetFormatError, DatasetNotFoundError
    from rareid.data.readers.video import read_video_dataset
    from rareid.tracks.model import checkpoint_problem, load_model, read_checkpoint
    from rareid.tracks.protocol import (
        SINGLE_FRAME,
        evaluate_mlr_video,
        markdown_table,
        summarize,
        video_set,
    )
    from rareid.tracks.tracklet import TrackInputError

    if problem := checkpoint_problem(args.ckpt):
        parser.error(problem)
    options = (
        {"split_seed": args.split_seed, "split_index": args.split_index}
        if args.dataset in ("ilidsvid", "prid2011")
        else {}
    )
    try:
        splits = read_video_dataset(args.dataset, args.root, **options)
        data = video_set(splits, args.max_frames)
    except (DatasetNotFoundError, DatasetFormatError, TrackInputError) as error:
        parser.error(f"--root: {error}")
    if not data.queries or not data.gallery:
        parser.error(
            f"--root: {args.dataset} under {args.root!r} has no query or no gallery tracklet"
        )
    print(splits.summary())
    model, preprocess = load_model(args.ckpt)
    data_options = read_checkpoint(args.ckpt).get("datamodule_hyper_parameters") or {}
    policy = str(data_options.get("level_policy") or "nearest")
    results = evaluate_mlr_video(
        model,
        preprocess,
        data,
        args.schedules,
        args.poolings,
        args.trials,
        args.seed,
        args.min_frames,
        policy,
    )
    summary = summarize(results)
    for line in markdown_table(summary, (*args.poolings, SINGLE_FRAME)):
        print(line)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"per_trial": results, "summary": summary}, indent=1))
    return 0
