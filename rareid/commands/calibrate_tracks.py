"""``rareid calibrate --tracks-index tracks.npz --labels labels.csv``: thresholds for tracklet
distances (:mod:`rareid.tracks.calibration`), stored in the tracks index, where ``rareid
tracks search`` and ``link`` read them."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rareid.runs import atomic_write


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[Path, Path]:
    """Refuse options of the crop calibration and bad values; the output paths."""
    from rareid.tracks.pooling import POOLINGS

    if not args.tracks_index:
        parser.error("--pooling and --min-frames calibrate a --tracks-index; pass one")
    for flag in ("index", "config", "onnx", "ckpt", "root"):
        if getattr(args, flag):
            parser.error(
                f"--{flag} and --tracks-index both given: a tracks index is calibrated on "
                "its own embeddings and --labels"
            )
    if not args.labels:
        parser.error("--tracks-index needs --labels: a camera,track_id,person CSV")
    if args.pooling is not None and args.pooling not in POOLINGS:
        parser.error(f"--pooling: expected one of {', '.join(POOLINGS)}, got {args.pooling!r}")
    if args.min_frames is not None and args.min_frames < 1:
        parser.error(f"--min-frames: expected a positive integer, got {args.min_frames}")
    for far in args.far:
        if not 0 < far < 1:
            parser.error(f"--far: expected rates in (0, 1), got {far}")
    if not 0 <= args.min_tar < 1:
        parser.error(f"--min-tar: expected a rate in [0, 1), got {args.min_tar}")
    if args.far_per_search is not None and args.far_per_search <= 0:
        parser.error(f"--far-per-search: expected a positive number, got {args.far_per_search}")
    folder = Path(args.tracks_index).parent
    out = Path(args.out) if args.out else folder / "tracks_calibration.json"
    png = Path(args.png) if args.png else out.with_suffix(".png")
    for flag, path in (("--out", out), ("--png", png)):
        if path.exists() and not args.overwrite:
            parser.error(
                f"{flag}: {str(path)!r} exists (an earlier calibration); pass --overwrite to "
                f"replace it or choose another {flag}"
            )
    return out, png


def calibrate_tracks_main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Calibrate, store the thresholds in the tracks index, write the JSON and the picture."""
    out, png = _check(parser, args)
    from rareid.commands.calibrate_picture import plot_calibration
    from rareid.deploy.verify.calibrate import level_summary, stored_thresholds
    from rareid.tracks.calibration import calibrate_tracks, read_track_labels
    from rareid.tracks.index import TrackIndex, TrackIndexError
    from rareid.tracks.match import DEFAULT_MIN_FRAMES
    from rareid.tracks.pooling import DEFAULT_POOLING
    from rareid.tracks.tracklet import TrackInputError

    try:
        index = TrackIndex.load(args.tracks_index)
    except TrackIndexError as error:
        parser.error(f"--tracks-index: {error}")
    try:
        labels = read_track_labels(args.labels, index)
    except TrackInputError as error:
        parser.error(f"--labels: {error}")
    if labels.identities < 2:
        parser.error(
            f"--labels: {labels.identities} person in {args.labels!r}: impostor pairs need "
            "at least two people"
        )
    pooling = args.pooling or DEFAULT_POOLING
    min_frames = args.min_frames or DEFAULT_MIN_FRAMES
    calibration, (genuine, impostor) = calibrate_tracks(
        index, labels, pooling, min_frames, args.far, args.min_tar, args.far_per_search
    )
    if not any(values.size for values in genuine.values()):
        parser.error(
            "--labels: no person is labelled in two cameras: no genuine pair to calibrate on"
        )
    calibration["split"] = f"track labels {args.labels}"
    text = json.dumps(calibration, indent=1).encode()
    atomic_write(out, lambda handle: handle.write(text))
    plot_calibration(genuine, impostor, calibration, png)
    index.calibration = calibration
    index.save(args.tracks_index)
    unlabelled = len(index) - len(labels.person_of)
    print(
        f"{len(labels.person_of)} labelled tracklets of {labels.identities} people "
        f"({unlabelled} tracklets of the index unlabelled"
        + (
            f", {labels.unlabelled_rows} rows with no person skipped"
            if labels.unlabelled_rows
            else ""
        )
        + f"); pairs across cameras, pooling {pooling}, --min-frames {min_frames}"
    )
    for level in sorted(calibration["levels"], key=int):
        print(level_summary(calibration, level))
    stored = stored_thresholds(calibration)
    print(
        f"wrote {out} and {png}; {stored} thresholds stored in {args.tracks_index} "
        f"(rareid tracks search and link use them with --pooling {pooling} --min-frames "
        f"{min_frames})",
        file=sys.stdout,
    )
    return 0
