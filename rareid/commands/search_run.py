"""What one ``rareid search`` run adds around the ranking: its output options (sheets,
threads), the FAR its verdicts use, the gallery files that went stale since indexing, and the
metadata that says what produced ``results.json``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rareid.commands.threads import add_threads_argument

if TYPE_CHECKING:
    from rareid.deploy.gallery.index import GalleryIndex

#: The per-pair FAR of the verdicts when neither --far nor the calibration chooses one.
DEFAULT_SEARCH_FAR = 1e-2


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """``--sheets [N]``, ``--no-sheets``, ``--html`` and ``--threads N``."""
    parser.add_argument(
        "--sheets",
        type=int,
        nargs="?",
        const=-1,
        default=-1,
        metavar="N",
        help="draw the rank sheets (default: all pages; N: the first N pages)",
    )
    parser.add_argument(
        "--no-sheets",
        dest="sheets",
        action="store_const",
        const=0,
        help="no rank sheet: results.csv and results.json only",
    )
    parser.add_argument(
        "--html",
        action="store_true",
        help="also write index.html (a review page that opens offline, thumbnails in thumbs/)",
    )
    add_threads_argument(parser)


def write_page(
    args: argparse.Namespace,
    queries: list[dict[str, Any]],
    matches: list[list[dict[str, Any]]],
    rows: list[dict[str, Any]],
    title: str,
    caption: str,
    run: dict[str, Any] | None,
) -> str:
    """With ``--html``: the review page of these results in --out; what the summary says of it."""
    if not args.html:
        return ""
    from rareid.deploy.report.page import write_report

    status = {row["gallery"]: row["gallery_status"] for row in rows if "gallery_status" in row}
    for ranked in matches:
        for match in ranked:
            match["gallery_status"] = status.get(match["gallery"], "ok")
    title = title.replace("rank sheet", "search results", 1)
    page, unreadable = write_report(Path(args.out), queries, matches, title, caption, run)
    missing = f" ({unreadable} images unreadable, shown without a thumbnail)" if unreadable else ""
    return f"; review page {page}{missing}"


def mark_stale(index: GalleryIndex, rows: list[dict[str, Any]]) -> None:
    """Give every row its gallery file's status (ok, deleted, changed since indexing) and say
    in one line which matched files are stale."""
    from rareid.deploy.gallery.staleness import describe_stale, stale_files

    position_of = {name: position for position, name in enumerate(index.paths)}
    stale = stale_files(index, (position_of[row["gallery"]] for row in rows))
    for row in rows:
        row["gallery_status"] = stale.get(position_of[row["gallery"]], "ok")
    if stale:
        print(describe_stale(index, stale), file=sys.stderr)


def run_metadata(
    args: argparse.Namespace, index: GalleryIndex, calibration: dict[str, Any] | None
) -> dict[str, Any]:
    """What produced results.json: enough to tell two runs apart and to repeat one."""
    import datetime

    import rareid

    return {
        "rareid_version": rareid.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "index": str(Path(args.index).resolve()),
        "index_images": len(index),
        "checkpoint": str(args.ckpt or index.checkpoint_path or ""),
        "checkpoint_sha256": index.checkpoint_sha256,
        "onnx": str(Path(args.onnx).resolve()) if args.onnx else None,
        "backend": args.backend,
        "ann": index.ann.describe() if index.ann is not None else None,
        "far": args.far,
        "far_per_search": (calibration or {}).get("far_per_search"),
        "calibrated": bool(calibration),
        "metric": index.metric,
        "rerank": bool(args.rerank),
        "top_k": args.top_k,
        "query": str(args.query),
        "threads": args.threads,
    }


def search_far(calibration: dict[str, Any] | None) -> float:
    """The per-pair FAR of the verdicts when --far is not given: the one calibrated to keep a
    whole search at ``rareid calibrate --far-per-search`` false alarms, else the default."""
    target = (calibration or {}).get("far_per_search")
    if target:
        print(
            f"verdicts at the per-pair FAR {target['pair_far']:.3g}: at most "
            f"{target['target']:g} false 'same' per search of {calibration['gallery_size']} "
            "images (calibrated with --far-per-search)"
        )
        return float(target["pair_far"])
    return DEFAULT_SEARCH_FAR
