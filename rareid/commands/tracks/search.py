"""``rareid tracks search``: rank an index's tracklets for query tracklets; ``matches.csv``,
``matches.json`` and rank sheets (each query's largest frames, then its matches')."""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rareid.runs import OneLineArgumentParser
from rareid.tracks.match import DEFAULT_MIN_FRAMES
from rareid.tracks.pooling import DEFAULT_POOLING, POOLINGS

if TYPE_CHECKING:
    from rareid.tracks.index import TrackIndex

#: Query tracklets per rank sheet page, and matches drawn per query.
QUERIES_PER_SHEET = 6
SHEET_MATCHES = 5


def build_parser() -> argparse.ArgumentParser:
    """The arguments of ``rareid tracks search`` (no torch imported)."""
    parser = OneLineArgumentParser(
        prog="rareid tracks search",
        description="Rank the tracklets of an index for query tracklets, each pair compared at "
        "the highest level both support with --min-frames frames.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--index", required=True, help="index written by `rareid tracks index`")
    add(
        "--query",
        required=True,
        help="query tracklets: a folder of <camera>/<track_id>/ crops, or a tracks index",
    )
    add("--top-k", type=int, default=10, help="matches per query tracklet")
    add("--out", default="track_matches", help="output folder")
    add("--overwrite", action="store_true", help="replace earlier results in --out")
    add("--pooling", choices=POOLINGS, default=DEFAULT_POOLING, help="how frames are pooled")
    add("--min-frames", type=int, default=DEFAULT_MIN_FRAMES, help="frames a level needs")
    add(
        "--threshold",
        type=float,
        help="distance at or below which a match is 'same' (default: the index's calibration "
        "of `rareid calibrate --tracks-index`, per level; without one 'uncalibrated')",
    )
    add(
        "--far",
        type=float,
        help="false-accept rate of the calibrated verdicts (default: the one calibrated with "
        "--far-per-search, else 0.01)",
    )
    add("--ckpt", help="checkpoint for query crop folders (default: the index's)")
    add("--device", default="cpu", help="torch device to embed query crops on")
    add(
        "--html",
        action="store_true",
        help="also write index.html (a review page that opens offline, thumbnails in thumbs/)",
    )
    return parser


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.top_k < 1:
        parser.error(f"--top-k: expected a positive integer, got {args.top_k}")
    if args.min_frames < 1:
        parser.error(f"--min-frames: expected a positive integer, got {args.min_frames}")
    if args.threshold is not None and not args.threshold >= 0:
        parser.error(f"--threshold: expected a distance >= 0, got {args.threshold}")
    if args.far is not None and not 0 < args.far < 1:
        parser.error(f"--far: expected a rate in (0, 1), got {args.far}")
    if args.far is not None and args.threshold is not None:
        parser.error("--far chooses a calibrated threshold; --threshold sets one: give one")
    out = Path(args.out)
    if not args.overwrite and (out / "matches.csv").exists():
        parser.error(f"--out: {args.out!r} already holds matches; pass --overwrite")


def load_queries(
    parser: argparse.ArgumentParser, args: argparse.Namespace, index: TrackIndex
) -> TrackIndex:
    """The query tracklets as an index: loaded, or embedded like the index's own frames (same
    model, reference size and level policy)."""
    from rareid.tracks.index import TrackIndex, TrackIndexError
    from rareid.tracks.model import checkpoint_problem, file_sha256, load_model
    from rareid.tracks.readers import read_crop_tracks
    from rareid.tracks.tracklet import TrackInputError

    path = Path(args.query)
    if path.is_file():
        try:
            queries = TrackIndex.load(path)
        except TrackIndexError as error:
            parser.error(f"--query: {error}")
        if queries.checkpoint_sha256 != index.checkpoint_sha256:
            parser.error(f"--query: {args.query!r} was embedded by another checkpoint")
        return queries
    try:
        tracks, report = read_crop_tracks(path)
    except TrackInputError as error:
        parser.error(f"--query: {error}")
    for line in report.lines():
        print(f"rareid tracks search: {line}", file=sys.stderr)
    ckpt = args.ckpt or index.checkpoint_path
    if problem := checkpoint_problem(ckpt):
        parser.error(problem + " (the index's checkpoint; pass --ckpt)")
    if file_sha256(ckpt) != index.checkpoint_sha256:
        parser.error(f"--ckpt: {ckpt!r} is not the checkpoint the index was built with")
    model, preprocess = load_model(ckpt, args.device)
    queries = TrackIndex.empty(model, index.level_policy)
    queries.checkpoint_sha256 = index.checkpoint_sha256
    queries.add_tracks(model, preprocess, tracks, index.reference)
    return queries


def verdict_thresholds(
    index: TrackIndex, levels: np.ndarray, args: argparse.Namespace
) -> np.ndarray:
    """The distance threshold of every pair (NaN: no verdict): ``--threshold``, else the
    index's tracklet calibration at the pair's level, saying on stderr which pairs get none."""
    if args.threshold is not None:
        return np.full(levels.shape, args.threshold)
    if not index.calibration:
        return np.full(levels.shape, np.nan)
    from rareid.commands.search_run import search_far
    from rareid.tracks.calibration import describe_reasons, pair_thresholds

    far = args.far if args.far is not None else search_far(index.calibration)
    thresholds, reasons = pair_thresholds(
        index.calibration, levels, far, args.pooling, args.min_frames
    )
    if reasons:
        print(
            f"rareid tracks search: uncalibrated verdicts: {describe_reasons(reasons)}",
            file=sys.stderr,
        )
    return thresholds


def ranked_rows(
    queries: TrackIndex, index: TrackIndex, args: argparse.Namespace
) -> tuple[list[dict[str, Any]], list[list[int]]]:
    """One row per query x rank and each query's ranked gallery positions; a query never
    matches the gallery tracklet with its own camera and track id."""
    from rareid.tracks.match import track_distances

    pairs = track_distances(
        queries.pooled(args.pooling),
        index.pooled(args.pooling),
        index.bounds,
        args.min_frames,
        index.metric,
    )
    thresholds = verdict_thresholds(index, pairs.levels, args)
    gallery_keys = index.keys()
    rows: list[dict[str, Any]] = []
    rankings: list[list[int]] = []
    for row, (camera, track_id) in enumerate(queries.keys()):
        order = [
            column
            for column in np.lexsort((np.arange(len(index)), pairs.distances[row])).tolist()
            if gallery_keys[column] != (camera, track_id)
        ][: args.top_k]
        rankings.append(order)
        for rank, column in enumerate(order, start=1):
            distance = float(pairs.distances[row, column])
            threshold = float(thresholds[row, column])
            verdict = (
                "uncalibrated"
                if np.isnan(threshold)
                else ("same" if distance <= threshold else "different")
            )
            rows.append(
                {
                    "query_camera": camera,
                    "query_track": track_id,
                    "rank": rank,
                    "gallery_camera": gallery_keys[column][0],
                    "gallery_track": gallery_keys[column][1],
                    "distance": round(distance, 6),
                    "level": int(pairs.levels[row, column]),
                    "query_frames": int(pairs.query_frames[row, column]),
                    "gallery_frames": int(pairs.gallery_frames[row, column]),
                    "level_note": "" if pairs.enough[row, column] else "fewer than --min-frames",
                    "verdict": verdict,
                }
            )
    return rows, rankings


def rows_per_query(rows: list[dict[str, Any]], rankings: list[list[int]]) -> list[list[dict]]:
    """The flat match rows (query by query, in ranking order) cut into one list per query."""
    cuts = itertools.accumulate((len(order) for order in rankings), initial=0)
    return [rows[start:stop] for start, stop in itertools.pairwise(cuts)]


def draw_sheets(
    queries: TrackIndex,
    index: TrackIndex,
    rows: list[dict[str, Any]],
    rankings: list[list[int]],
    out: Path,
) -> list[Path]:
    """Rank sheet pages: per query, its largest frames, then each match's largest frame with
    the distance, the level used and the verdict."""
    from matplotlib.figure import Figure

    from rareid.tracks.model import VERDICT_COLORS

    written = []
    by_query = rows_per_query(rows, rankings)
    pages = max(1, -(-len(rankings) // QUERIES_PER_SHEET))
    for page in range(pages):
        chosen = list(
            range(page * QUERIES_PER_SHEET, min(len(rankings), (page + 1) * QUERIES_PER_SHEET))
        )
        columns = 1 + SHEET_MATCHES
        figure = Figure(figsize=(1.6 * columns + 1.6, 2.6 * max(1, len(chosen)) + 0.6))
        axes = figure.subplots(max(1, len(chosen)), columns, squeeze=False)
        for axis in axes.flat:
            axis.axis("off")
        for line, query in enumerate(chosen):
            strip = np.concatenate(list(queries.thumbnails[query][:3]), axis=1)
            axes[line][0].imshow(strip)
            levels = queries.levels[queries.frame_rows(query)]
            axes[line][0].set_title(
                f"QUERY {queries.cameras[query]}/{queries.track_ids[query]}\n"
                f"{levels.size} frames, levels {levels.min()}-{levels.max()}",
                fontsize=7,
            )
            for slot, (column, match) in enumerate(
                zip(rankings[query][:SHEET_MATCHES], by_query[query], strict=False), start=1
            ):
                axes[line][slot].imshow(index.thumbnails[column][0])
                axes[line][slot].set_title(
                    f"#{slot} {match['gallery_camera']}/{match['gallery_track']}\n"
                    f"d {match['distance']:.3g} lvl {match['level']}\n{match['verdict']}",
                    fontsize=7,
                    color=VERDICT_COLORS[match["verdict"]],
                )
        figure.suptitle(f"tracklet rank sheet - page {page + 1} of {pages}", fontsize=9)
        figure.tight_layout()
        path = out / f"rank_sheet_{page + 1:03d}.png"
        figure.savefig(path, dpi=110)
        written.append(path)
    return written


def write_page(
    queries: TrackIndex,
    index: TrackIndex,
    rows: list[dict[str, Any]],
    rankings: list[list[int]],
    out: Path,
    title: str,
) -> Path:
    """The review page: per query tracklet its largest frame, its levels and frames, then its
    matches' largest frames with distance, the level compared at and the verdict."""
    from rareid.deploy.report.page import write_report

    page_queries, page_matches = [], []
    for query, (order, query_rows) in enumerate(
        zip(rankings, rows_per_query(rows, rankings), strict=True)
    ):
        levels = queries.levels[queries.frame_rows(query)]
        name = f"{queries.cameras[query]}/{queries.track_ids[query]}"
        page_queries.append(
            {
                "name": name,
                "image": queries.thumbnails[query][0],
                "key": f"query {query}",
                "level": f"{levels.min()}-{levels.max()}",
                "size": f"{levels.size} frames",
            }
        )
        ranked = []
        for column, row in zip(order, query_rows, strict=True):
            note = f"level {row['level']}, {row['query_frames']}+{row['gallery_frames']} frames"
            ranked.append(
                {
                    **row,
                    "gallery": f"{row['gallery_camera']}/{row['gallery_track']}",
                    "image": index.thumbnails[column][0],
                    "key": f"gallery {column}",
                    "note": note + (f" ({row['level_note']})" if row["level_note"] else ""),
                }
            )
        page_matches.append(ranked)
    # the gallery names are tracklets, not files of a gallery index: no labels CSV
    return write_report(out, page_queries, page_matches, title, labels=False)[0]


def main(argv: Sequence[str]) -> int:
    """``rareid tracks search``: rank indexed tracklets for query tracklets."""
    parser = build_parser()
    args = parser.parse_args(list(argv))
    _check(parser, args)
    from rareid.tracks.index import TrackIndex, TrackIndexError

    try:
        index = TrackIndex.load(args.index)
    except TrackIndexError as error:
        parser.error(f"--index: {error}")
    if not len(index):
        parser.error(f"--index: {args.index!r} holds no tracklet")
    if args.far is not None and not index.calibration:
        parser.error(
            f"--far: {args.index!r} holds no calibration (rareid calibrate --tracks-index)"
        )
    queries = load_queries(parser, args, index)
    rows, rankings = ranked_rows(queries, index, args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "matches.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]) if rows else ["query_camera"])
        writer.writeheader()
        writer.writerows(rows)
    (out / "matches.json").write_text(json.dumps(rows, indent=1))
    sheets = draw_sheets(queries, index, rows, rankings, out)
    if args.html:
        title = f"tracklet matches of {Path(args.index).name} ({args.pooling} pooling)"
        page = write_page(queries, index, rows, rankings, out, title)
        print(f"review page {page}")
    for row in rows:
        if row["rank"] == 1:
            print(
                f"{row['query_camera']}/{row['query_track']}: best {row['gallery_camera']}/"
                f"{row['gallery_track']} d {row['distance']:.4g} at level {row['level']} "
                f"({row['query_frames']}+{row['gallery_frames']} frames) {row['verdict']}"
            )
    print(
        f"{len(queries)} query tracklets against {len(index)} ({args.pooling} pooling, "
        f"--min-frames {args.min_frames}); wrote matches.csv, matches.json and {len(sheets)} "
        f"rank sheet(s) to {out}"
    )
    return 0
