"""``rareid tracks link``: one global identity per person across cameras, written as
``camera,track_id,global_id`` and as MOTChallenge files per camera with global ids."""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

from rareid.runs import OneLineArgumentParser
from rareid.tracks.match import DEFAULT_MIN_FRAMES
from rareid.tracks.pooling import DEFAULT_POOLING, POOLINGS


def build_parser() -> argparse.ArgumentParser:
    """The arguments of ``rareid tracks link`` (no torch imported)."""
    parser = OneLineArgumentParser(
        prog="rareid tracks link",
        description="Give every tracklet of an index a global identity: mutually nearest "
        "tracklets of two cameras are linked (closest first, under --threshold), never two "
        "tracklets of one camera that overlap in time.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--index", required=True, help="index written by `rareid tracks index`")
    add("--out", required=True, help="CSV to write (camera,track_id,global_id)")
    add(
        "--threshold",
        type=float,
        help="largest distance linked (default: a 'same' verdict of the index's calibration, "
        "per level, when it has one; else no limit)",
    )
    add("--far", type=float, help="false-accept rate of the calibrated thresholds")
    add("--mot-dir", help="folder of <camera>.txt MOT files (default: <out>_mot/)")
    add("--pooling", choices=POOLINGS, default=DEFAULT_POOLING, help="how frames are pooled")
    add("--min-frames", type=int, default=DEFAULT_MIN_FRAMES, help="frames a level needs")
    return parser


def main(argv: Sequence[str]) -> int:
    """``rareid tracks link``: global identities across cameras."""
    parser = build_parser()
    args = parser.parse_args(list(argv))
    if args.threshold is not None and not args.threshold >= 0:
        parser.error(f"--threshold: expected a distance >= 0, got {args.threshold}")
    if args.min_frames < 1:
        parser.error(f"--min-frames: expected a positive integer, got {args.min_frames}")
    if args.far is not None and not 0 < args.far < 1:
        parser.error(f"--far: expected a rate in (0, 1), got {args.far}")
    if args.far is not None and args.threshold is not None:
        parser.error("--far chooses a calibrated threshold; --threshold sets one: give one")
    from rareid.tracks.index import TrackIndex, TrackIndexError
    from rareid.tracks.link import link_tracks
    from rareid.tracks.match import track_distances

    try:
        index = TrackIndex.load(args.index)
    except TrackIndexError as error:
        parser.error(f"--index: {error}")
    pooled = index.pooled(args.pooling)
    pairs = track_distances(pooled, pooled, index.bounds, args.min_frames, index.metric)
    spans = [index.span(track) for track in range(len(index))]
    threshold = args.threshold
    if threshold is None and index.calibration:
        from rareid.commands.search_run import search_far
        from rareid.tracks.calibration import describe_reasons, pair_thresholds

        far = args.far if args.far is not None else search_far(index.calibration)
        threshold, reasons = pair_thresholds(
            index.calibration, pairs.levels, far, args.pooling, args.min_frames
        )
        print(f"links need a calibrated 'same' verdict at FAR {far:g}")
        if reasons:
            print(f"never linked, no threshold: {describe_reasons(reasons)}", file=sys.stderr)
    elif args.far is not None:
        parser.error(
            f"--far: {args.index!r} holds no calibration (rareid calibrate --tracks-index)"
        )
    identities, refused = link_tracks(pairs, index.cameras, spans, threshold)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["camera", "track_id", "global_id"])
        for (camera, track_id), identity in zip(index.keys(), identities, strict=True):
            writer.writerow([camera, track_id, identity])
    mot_dir = Path(args.mot_dir) if args.mot_dir else out.with_name(out.stem + "_mot")
    written = []
    for camera in sorted(set(index.cameras)):
        lines = []
        for track in (item for item in range(len(index)) if index.cameras[item] == camera):
            for row in index.frame_rows(track):
                frame, box = int(index.frames[row]), index.boxes[row].tolist()
                if frame >= 1 and box[2] > 0:
                    lines.append((frame, identities[track], *box))
        if lines:
            mot_dir.mkdir(parents=True, exist_ok=True)
            path = mot_dir / f"{camera}.txt"
            path.write_text(
                "".join(",".join(map(str, row)) + ",1,-1,-1,-1\n" for row in sorted(lines))
            )
            written.append(path.name)
    count = len(set(identities))
    print(
        f"{len(index)} tracklets in {len(set(index.cameras))} camera(s) -> {count} global "
        f"identities ({refused} links refused: same camera, overlapping in time); wrote {out}"
        + (
            f" and {len(written)} MOT file(s) in {mot_dir}"
            if written
            else " (no frame boxes: no MOT files)"
        )
    )
    return 0
