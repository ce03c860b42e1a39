"""``rareid search``: rank a gallery index for query crops; CSV, JSON, rank sheets and a short
console table. A thin wrapper over :mod:`rareid.deploy.search.exact` (ranking),
:mod:`rareid.deploy.verify.verdicts` (verdicts, crop checks) and :mod:`rareid.commands.search_sheet` (output).

The parser imports nothing heavy (no torch, no Lightning), so ``rareid search --help`` and usage
errors answer at once; the index, the model and the runtimes are imported after the arguments
are read.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rareid.commands.arguments import checkpoint_problem
from rareid.commands.search_rank import Queries, rank_queries, without_torch
from rareid.commands.search_run import (
    DEFAULT_SEARCH_FAR,
    add_output_arguments,
    mark_stale,
    run_metadata,
    search_far,
    write_page,
)
from rareid.commands.threads import threads_problem, use_threads
from rareid.deploy.crops import MIN_CROP_HEIGHT, MIN_CROP_WIDTH
from rareid.levels import LEVEL_POLICIES
from rareid.runs import OneLineArgumentParser

if TYPE_CHECKING:
    from rareid.deploy.gallery.index import GalleryIndex
    from rareid.deploy.gallery.record import IndexRecord
    from rareid.deploy.search.exact import SearchResult
    from rareid.deploy.search.prefix import ArraySearch


def _query_paths(spec: str) -> list[Path]:
    from rareid.deploy.model.arrays import list_images

    path = Path(spec)
    if path.is_dir():
        return list_images(path)
    if path.is_file():
        return [path]
    raise FileNotFoundError(f"{spec!r} is neither an image file nor a folder")


def build_parser() -> argparse.ArgumentParser:
    """The arguments of ``rareid search`` (built without importing torch)."""
    parser = OneLineArgumentParser(
        prog="rareid search",
        description="Rank a gallery index for query crops, each at the level its size implies. "
        "Writes results.csv / results.json (every match) and rank_sheet_NNN.png pages (every "
        "query) to --out, and prints a short table.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--index", required=True, help="index file written by `rareid index`")
    add("--query", required=True, help="an image or a folder of images (searched recursively)")
    add("--top-k", type=int, default=10, help="matches per query")
    add("--out", default="search_results", help="output folder")
    add("--overwrite", action="store_true", help="replace earlier results in --out")
    add("--ckpt", help="checkpoint (default: the one the index was built with)")
    add(
        "--reference-height",
        type=float,
        help="height in px of a rate-1 crop (default: the gallery's median height; the width "
        "reference scales with it)",
    )
    add("--rate", type=float, help="use this rate for every query instead of estimating it")
    add("--level", type=int, help="use this level (1..m) for every query")
    add(
        "--level-policy",
        choices=LEVEL_POLICIES,
        help="how an estimated rate becomes a level (default: the checkpoint's data.level_policy)",
    )
    add(
        "--far",
        type=float,
        help="per-pair false-accept rate whose thresholds give verdicts (default: the FAR "
        f"calibrated with --far-per-search, else {DEFAULT_SEARCH_FAR:g})",
    )
    add("--calibration", help="calibration JSON (default: the one stored in the index)")
    add(
        "--min-height",
        type=int,
        default=MIN_CROP_HEIGHT,
        help="query crops lower than this (px) are flagged",
    )
    add(
        "--min-width",
        type=int,
        default=MIN_CROP_WIDTH,
        help="query crops narrower than this (px) are flagged",
    )
    add(
        "--backend",
        choices=("auto", "torch", "faiss", "onnx"),
        default="auto",
        help="ranking backend (auto: faiss when installed); onnx: embed queries with --onnx, "
        "rank with faiss/torch",
    )
    add(
        "--onnx",
        help="exported model for --backend onnx: an ONNX file of `rareid export`, an OpenVINO "
        ".xml, a bundle folder or hf-hub:ORG/NAME",
    )
    add("--weights", help="a local bundle folder to use instead of --onnx hf-hub:ORG/NAME")
    add("--rerank", action="store_true", help="order by k-reciprocal re-ranked distance")
    add("--rerank-k1", type=int, default=20, help="k-reciprocal neighbours (--rerank)")
    add("--rerank-k2", type=int, default=6, help="query expansion neighbours (--rerank)")
    add(
        "--rerank-lambda",
        type=float,
        default=0.3,
        help="weight of the original distance in the re-ranked one (--rerank)",
    )
    add("--device", default="auto", help="torch device to embed queries on (auto, cpu, cuda, ...)")
    add("--batch-size", type=int, default=64, help="query crops per forward pass")
    add_output_arguments(parser)
    return parser


def _check_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse contradictory or out-of-range options before anything is loaded."""
    from rareid.commands.search_sheet import sheet_name

    if args.top_k < 1:
        parser.error(f"--top-k: expected a positive integer, got {args.top_k}")
    if args.batch_size < 1:
        parser.error(f"--batch-size: expected a positive integer, got {args.batch_size}")
    if args.sheets < -1:
        parser.error(f"--sheets: expected a number of pages (0 or more), got {args.sheets}")
    if problem := threads_problem(args.threads):
        parser.error(problem)
    if args.rate is not None and args.level is not None:
        parser.error("--rate and --level both given: choose one")
    if args.rate is not None and not (math.isfinite(args.rate) and args.rate > 0):
        parser.error(f"--rate: expected a positive rate, got {args.rate}")
    if args.reference_height is not None and not args.reference_height > 0:
        parser.error(f"--reference-height: expected a positive height, got {args.reference_height}")
    if args.far is not None and not 0 < args.far < 1:
        parser.error(f"--far: expected a rate in (0, 1), got {args.far}")
    if args.min_height < 1 or args.min_width < 1:
        parser.error("--min-height / --min-width: expected positive sizes in pixels")
    if args.backend == "onnx" and not args.onnx:
        parser.error("--backend onnx needs --onnx FILE (written by `rareid export`)")
    earlier = ("results.csv", "results.json", "rank_sheet.png", sheet_name(1))
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        parser.error(f"--out: {str(out_dir)!r} is a file; give a folder for the results")
    if not args.overwrite and any((out_dir / name).exists() for name in earlier):
        parser.error(f"--out: {str(out_dir)!r} already holds search results; pass --overwrite")
    if args.backend != "onnx":
        from rareid.deploy.model.checks import device_problem

        problem = device_problem(args.device)
        if problem:
            parser.error(problem)


def _load_inputs(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[GalleryIndex | IndexRecord, list[Path], dict[str, Any] | None, str | None]:
    """The index, the query files, the calibration and the checkpoint, each checked."""
    import numpy as np

    from rareid.deploy.gallery.index_file import GalleryIndexError
    from rareid.deploy.gallery.record import IndexRecord

    try:
        record = IndexRecord.load(args.index)
        queries = _query_paths(args.query)
    except (FileNotFoundError, GalleryIndexError) as error:
        parser.error(str(error))
    finite = np.isfinite(record.embeddings).all(axis=1)
    if not finite.all():
        parser.error(
            f"--index: {args.index!r} holds NaN or infinite values in {int((~finite).sum())} "
            "embedding(s): rebuild it with `rareid index`"
        )
    index: GalleryIndex | IndexRecord = record
    if not without_torch(args, record):
        from rareid.deploy.gallery.index import GalleryIndex

        index = GalleryIndex.from_record(record)
    if not queries:
        parser.error(f"--query: no jpg/png/bmp/webp image under {args.query!r}")
    if len(index) == 0:
        parser.error(f"--index: {args.index!r} holds no image")
    if args.level is not None and not 1 <= args.level <= index.num_levels:
        parser.error(
            f"--level: expected 1..{index.num_levels} (rates {index.rates}), got {args.level}"
        )
    calibration = index.calibration
    if args.calibration:
        try:
            calibration = json.loads(Path(args.calibration).read_text())
        except (OSError, ValueError) as error:
            parser.error(f"--calibration: cannot read {args.calibration!r}: {error}")
    ckpt = args.ckpt or index.checkpoint_path
    if args.backend != "onnx":
        if args.ckpt is None and not index.checkpoint_path:
            parser.error(
                f"--onnx: {args.index!r} was built with an ONNX model (no checkpoint recorded); "
                "pass --backend onnx --onnx MODEL.onnx (or --ckpt CHECKPOINT)"
            )
        if args.ckpt is None and (not ckpt or not Path(ckpt).is_file()):
            parser.error(f"--ckpt: the index's checkpoint {ckpt!r} is not there; pass --ckpt PATH")
        if problem := checkpoint_problem(ckpt):
            parser.error(problem)
        from rareid.deploy.model.inference import checkpoint_facts

        if checkpoint_facts(ckpt)[0] != index.checkpoint_sha256:
            parser.error(
                f"--ckpt: {ckpt!r} is not the checkpoint the index was built with (SHA-256 "
                "differs): search with that checkpoint or rebuild the index"
            )
    return index, queries, calibration, ckpt


def _read_queries(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    index: GalleryIndex,
    paths: list[Path],
) -> Queries:
    """Decode the query crops and give each its rate and level (from its size or the options);
    unreadable files are skipped with a word each."""
    import cv2
    import numpy as np

    from rareid.data.readers.base import decode_strictly, header_problem
    from rareid.deploy.crops import check_crop
    from rareid.levels import query_level

    reference = args.reference_height or index.reference_height
    # the width of a rate-1 crop: the gallery's median width, scaled with --reference-height
    reference_width = float(np.median(index.sizes[:, 1])) * reference / index.reference_height
    queries = Queries(reference=reference, reference_width=reference_width)
    policy = args.level_policy or index.level_policy
    for path in paths:
        problem = header_problem(str(path))
        if problem is not None and problem.startswith("too large"):
            parser.error(f"--query: {str(path)!r} is {problem}")
        if problem is None:
            image, problem = decode_strictly(str(path))
        if problem is not None:
            queries.skipped[path] = problem
            continue
        height, width = (int(side) for side in image.shape[:2])
        if args.level is not None:
            rate, level = float("nan"), args.level
        else:
            rate, level = query_level(
                height, index.rates, reference, policy, args.rate, width, reference_width
            )
        flags = str(check_crop(height, width, args.min_height, args.min_width))
        queries.images.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        queries.paths.append(path)
        queries.infos.append(
            {"height": height, "width": width, "rate": rate, "level": level, "flags": flags}
        )
    for path, problem in queries.skipped.items():
        print(f"skipped query {path}: {problem}", file=sys.stderr)
    if not queries.images:
        parser.error(f"--query: none of the {len(paths)} images could be read")
    return queries


def _result_rows(
    args: argparse.Namespace,
    index: GalleryIndex | IndexRecord,
    calibration: dict[str, Any] | None,
    queries: Queries,
    result: SearchResult | ArraySearch,
    original: Any,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[list[dict[str, Any]]]]:
    """One row per query x rank (CSV/JSON), and the queries and matches of the rank sheets."""
    from rareid.deploy.verify.verdicts import level_threshold, verdict

    rows: list[dict[str, Any]] = []
    sheet_queries, sheet_matches = [], []
    # the console names a query by its path under --query (its camera folder, if any)
    root = Path(args.query) if Path(args.query).is_dir() else None
    for position, (path, info) in enumerate(zip(queries.paths, queries.infos, strict=True)):
        threshold, reason = level_threshold(calibration, info["level"], args.far)
        ranked = []
        for rank, (gallery_position, distance) in enumerate(
            zip(result.indices[position].tolist(), original[position].tolist(), strict=True),
            start=1,
        ):
            order_distance = float(result.distances[position, rank - 1])
            row = {
                "query": str(path),
                "query_height": info["height"],
                "query_width": info["width"],
                "query_flags": info["flags"],
                "rate": round(info["rate"], 4) if math.isfinite(info["rate"]) else "",
                "level": info["level"],
                "rank": rank,
                "gallery": index.paths[gallery_position],
                "distance": round(float(distance), 6),  # Eq. 2: the verdict's distance
                "threshold": "" if threshold is None else round(threshold, 6),
                "verdict": verdict(float(distance), threshold),
                "verdict_reason": reason,
            }
            if args.rerank:
                row["rerank_distance"] = round(order_distance, 6)
            rows.append(row)
            ranked.append(
                {
                    **row,
                    "order_distance": order_distance,
                    "path": index.absolute_path(gallery_position),
                }
            )
        label = (
            path.relative_to(root).as_posix() if root and path.is_relative_to(root) else path.name
        )
        sheet_queries.append({"path": path, "name": str(path), "label": label, **info})
        sheet_matches.append(ranked)
    return rows, sheet_queries, sheet_matches


def _write_and_report(
    args: argparse.Namespace,
    num_levels: int,
    calibration: dict[str, Any] | None,
    queries: Queries,
    rows: list[dict[str, Any]],
    sheet_queries: list[dict[str, Any]],
    sheet_matches: list[list[dict[str, Any]]],
    run: dict[str, Any] | None = None,
) -> None:
    """Write results.csv/json (with ``run``, what produced them) and the rank sheets to
    --out; print the table and a summary."""
    from rareid.commands.search_sheet import (
        QUERIES_PER_SHEET,
        calibration_caption,
        calibration_lines,
        draw_rank_sheets,
        summary_table,
        write_results,
    )

    out_dir = Path(args.out)
    csv_path, json_path = write_results(rows, out_dir, run)
    title = "rank sheet, re-ranked (k-reciprocal)" if args.rerank else "rank sheet, plain ranking"
    title += f" of {Path(args.index).name}"
    caption = calibration_caption(calibration, num_levels, args.far)
    if args.rerank:
        caption += "; order: re-ranked distance, verdict: prefix distance d"
    shown = len(sheet_queries) if args.sheets < 0 else args.sheets * QUERIES_PER_SHEET
    sheets = []
    if shown > 0:
        sheets = draw_rank_sheets(
            sheet_queries[:shown], sheet_matches[:shown], out_dir, title, caption
        )
    distance_label = "re-ranked distance" if args.rerank else "distance"
    for line in summary_table(sheet_queries, sheet_matches, distance_label):
        print(line)
    per_level: dict[int, int] = {}
    for info in queries.infos:
        per_level[info["level"]] = per_level.get(info["level"], 0) + 1
    flagged = sum(bool(info["flags"]) for info in queries.infos)
    print(
        f"{len(queries.paths)} queries ({len(queries.skipped)} unreadable skipped, {flagged} "
        "flagged crops), levels "
        + ", ".join(f"{level}: {count}" for level, count in sorted(per_level.items()))
        + f"; reference size {queries.reference:g}x{queries.reference_width:.0f}px"
    )
    for line in calibration_lines(calibration, num_levels, args.far):
        print(line)
    if args.rerank:
        print("ordered by the re-ranked distance; verdicts from the prefix distance (Eq. 2)")
    if sheets:
        pages = f"{len(sheets)} rank sheet(s) {sheets[0].name}..{sheets[-1].name}"
        left = len(sheet_queries) - min(shown, len(sheet_queries))
        pages += f" ({QUERIES_PER_SHEET} queries per sheet" + (
            f"; {left} queries not drawn, see --sheets)" if left else ")"
        )
    else:
        pages = "no rank sheet (--no-sheets)"
    page = write_page(args, sheet_queries, sheet_matches, rows, title, caption, run)
    print(f"wrote {csv_path}, {json_path} and {pages} in {out_dir}{page}")


def main(argv: Sequence[str]) -> int:
    """``rareid search``: rank an index for query crops; CSV, JSON and rank-sheet PNGs."""
    parser = build_parser()
    args = parser.parse_args(list(argv))
    _check_options(parser, args)
    index, paths, calibration, ckpt = _load_inputs(parser, args)
    if args.far is None:
        args.far = search_far(calibration)
    queries = _read_queries(parser, args, index, paths)
    from rareid.deploy.gallery.record import IndexRecord

    args.threads = use_threads(
        args.threads, len(queries.paths), torch_threads=not isinstance(index, IndexRecord)
    )
    result, original = rank_queries(parser, args, index, ckpt, queries)
    tables = _result_rows(args, index, calibration, queries, result, original)
    mark_stale(index, tables[0])
    try:
        _write_and_report(
            args,
            index.num_levels,
            calibration,
            queries,
            *tables,
            run_metadata(args, index, calibration),
        )
    except OSError as error:  # a full disk or a read-only folder: each file is whole or absent
        parser.error(f"--out: cannot write to {args.out!r} ({error.strerror or error})")
    return 0
