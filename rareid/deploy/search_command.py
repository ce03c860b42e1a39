"""``rareid search``: rank a gallery index for query crops; CSV, JSON, rank sheets and a short
console table. A thin wrapper over :mod:`rareid.deploy.search` (ranking),
:mod:`rareid.deploy.verdicts` (verdicts, crop checks) and :mod:`rareid.deploy.sheet` (output)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rareid.data.lowres import LEVEL_POLICIES
from rareid.deploy.inference import list_images
from rareid.deploy.search import query_level
from rareid.deploy.sheet import (
    QUERIES_PER_SHEET,
    draw_rank_sheets,
    sheet_name,
    summary_table,
    write_results,
)
from rareid.deploy.verdicts import (
    MIN_CROP_HEIGHT,
    MIN_CROP_WIDTH,
    calibration_caption,
    calibration_lines,
    check_crop,
    level_threshold,
    verdict,
)
from rareid.runs import OneLineArgumentParser


def _query_paths(spec: str) -> list[Path]:
    path = Path(spec)
    if path.is_dir():
        return list_images(path)
    if path.is_file():
        return [path]
    raise FileNotFoundError(f"{spec!r} is neither an image file nor a folder")


def build_parser() -> argparse.ArgumentParser:
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
    add("--far", type=float, default=1e-2, help="false-accept rate whose thresholds give verdicts")
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
    add("--onnx", help="ONNX model of `rareid export` (for --backend onnx)")
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
    return parser


def search_main(argv: Sequence[str]) -> int:
    """``rareid search``: rank an index for query crops; CSV, JSON and rank-sheet PNGs."""
    parser = build_parser()
    args = parser.parse_args(list(argv))

    from rareid.deploy.backends import EmbeddingBackend, OnnxBackend, TorchBackend
    from rareid.deploy.checks import check_finite_embeddings, check_finite_model
    from rareid.deploy.index import GalleryIndex, GalleryIndexError, resolve_device
    from rareid.deploy.inference import file_sha256, load_model

    if args.top_k < 1:
        parser.error(f"--top-k: expected a positive integer, got {args.top_k}")
    if args.rate is not None and args.level is not None:
        parser.error("--rate and --level both given: choose one")
    if args.rate is not None and not (math.isfinite(args.rate) and args.rate > 0):
        parser.error(f"--rate: expected a positive rate, got {args.rate}")
    if args.reference_height is not None and not args.reference_height > 0:
        parser.error(f"--reference-height: expected a positive height, got {args.reference_height}")
    if not 0 < args.far < 1:
        parser.error(f"--far: expected a rate in (0, 1), got {args.far}")
    if args.min_height < 1 or args.min_width < 1:
        parser.error("--min-height / --min-width: expected positive sizes in pixels")
    if args.backend == "onnx" and not args.onnx:
        parser.error("--backend onnx needs --onnx FILE (written by `rareid export`)")
    out_dir = Path(args.out)
    earlier = ("results.csv", "results.json", "rank_sheet.png", sheet_name(1))
    if not args.overwrite and any((out_dir / name).exists() for name in earlier):
        parser.error(f"--out: {str(out_dir)!r} already holds search results; pass --overwrite")
    try:
        index = GalleryIndex.load(args.index)
        queries = _query_paths(args.query)
        check_finite_embeddings(index.embeddings, f"--index: {args.index!r}")
    except (FileNotFoundError, GalleryIndexError) as error:
        parser.error(str(error))
    except ValueError as error:
        parser.error(f"{error}: rebuild it with `rareid index`")
    if not queries:
        parser.error(f"--query: no jpg/png/bmp/webp image under {args.query!r}")
    if len(index) == 0:
        parser.error(f"--index: {args.index!r} holds no image")
    num_levels = index.num_levels
    if args.level is not None and not 1 <= args.level <= num_levels:
        parser.error(f"--level: expected 1..{num_levels} (rates {index.rates}), got {args.level}")
    calibration = index.calibration
    if args.calibration:
        try:
            calibration = json.loads(Path(args.calibration).read_text())
        except (OSError, ValueError) as error:
            parser.error(f"--calibration: cannot read {args.calibration!r}: {error}")
    ckpt = args.ckpt or index.checkpoint_path
    if args.backend != "onnx":
        if not ckpt or not Path(ckpt).is_file():
            parser.error(f"--ckpt: the index's checkpoint {ckpt!r} is not there; pass --ckpt PATH")
        if file_sha256(ckpt) != index.checkpoint_sha256:
            parser.error(
                f"--ckpt: {ckpt!r} is not the checkpoint the index was built with (SHA-256 "
                "differs): search with that checkpoint or rebuild the index"
            )

    import cv2

    reference = args.reference_height or index.reference_height
    # the width of a rate-1 crop: the gallery's median width, scaled with --reference-height
    reference_width = float(np.median(index.sizes[:, 1])) * reference / index.reference_height
    policy = args.level_policy or index.level_policy
    readable, skipped, images, infos = [], [], [], []
    for path in queries:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            skipped.append(path)
            continue
        height, width = (int(side) for side in image.shape[:2])
        if args.level is not None:
            rate, level = float("nan"), args.level
        else:
            rate, level = query_level(
                height, index.rates, reference, policy, args.rate, width, reference_width
            )
        flags = str(check_crop(height, width, args.min_height, args.min_width))
        images.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        readable.append(path)
        infos.append(
            {"height": height, "width": width, "rate": rate, "level": level, "flags": flags}
        )
    for path in skipped:
        print(f"skipped query {path}: unreadable or not an image", file=sys.stderr)
    if not images:
        parser.error(f"--query: none of the {len(queries)} images could be read")
    levels = torch.tensor([info["level"] for info in infos], dtype=torch.long)
    tensors = index.preprocess(images)
    try:
        runtime: EmbeddingBackend
        if args.backend == "onnx":
            runtime = OnnxBackend(args.onnx, expected_sha256=index.checkpoint_sha256)
        else:
            model = load_model(ckpt, resolve_device(args.device))[0]
            check_finite_model(model, ckpt)
            runtime = TorchBackend(model)
        index.check_model(runtime)
        embeddings = runtime.embed(tensors, levels)
        check_finite_embeddings(embeddings, "the query embeddings")
        rank_backend = "auto" if args.backend == "onnx" else args.backend
        if args.rerank:
            from rareid.deploy.rerank import rerank_search

            result, original = rerank_search(
                index,
                embeddings,
                levels,
                args.top_k,
                rank_backend,
                k1=args.rerank_k1,
                k2=args.rerank_k2,
                lambda_value=args.rerank_lambda,
            )
        else:
            result = index.search(embeddings, levels, args.top_k, rank_backend)
            original = result.distances
    except (ImportError, ValueError, OSError) as error:
        parser.error(str(error))

    rows: list[dict[str, Any]] = []
    sheet_queries, sheet_matches = [], []
    for position, (path, info) in enumerate(zip(readable, infos, strict=True)):
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
        sheet_queries.append({"path": path, "name": str(path), **info})
        sheet_matches.append(ranked)
    csv_path, json_path = write_results(rows, out_dir)
    title = "rank sheet, re-ranked (k-reciprocal)" if args.rerank else "rank sheet, plain ranking"
    title += f" of {Path(args.index).name}"
    caption = calibration_caption(calibration, num_levels, args.far)
    sheets = draw_rank_sheets(sheet_queries, sheet_matches, out_dir, title, caption)
    distance_label = "re-ranked distance" if args.rerank else "distance"
    for line in summary_table(sheet_queries, sheet_matches, distance_label):
        print(line)
    per_level: dict[int, int] = {}
    for info in infos:
        per_level[info["level"]] = per_level.get(info["level"], 0) + 1
    flagged = sum(bool(info["flags"]) for info in infos)
    print(
        f"{len(readable)} queries ({len(skipped)} unreadable skipped, {flagged} flagged crops), "
        "levels "
        + ", ".join(f"{level}: {count}" for level, count in sorted(per_level.items()))
        + f"; reference size {reference:g}x{reference_width:.0f}px"
    )
    for line in calibration_lines(calibration, num_levels, args.far):
        print(line)
    if args.rerank:
        print("ordered by the re-ranked distance; verdicts from the prefix distance (Eq. 2)")
    pages = f"{len(sheets)} rank sheet(s) {sheets[0].name}..{sheets[-1].name}"
    print(
        f"wrote {csv_path}, {json_path} and {pages} in {out_dir} "
        f"({QUERIES_PER_SHEET} queries per sheet)"
    )
    return 0
