"""Rank a gallery index for real query crops: the level of each query from its height, the
prefix distance of Eq. 2, exact top-k through faiss or torch, verdicts, CSV / JSON / rank sheet.

Exact search on one stored copy of the gallery for every level: for the squared Euclidean
distance on the first ``p_k`` dimensions,

    ||q_k - g_k||^2 = ||q_k||^2 - 2 (q_k . g_k - ||g_k||^2 / 2),

so a level-``k`` query is the inner product of ``[q_k, 0, e_k]`` (its prefix, zeros, a one-hot
of its level) with the gallery row ``[g, -||g_1||^2/2, ..., -||g_m||^2/2]``. One flat
inner-product index of width ``d + m`` serves all levels (faiss path); the torch path computes
the prefix distances directly, in gallery chunks. Both re-score their candidates with the same
exact formula and order ties by gallery position, so they return the same list.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from rareid.data.lowres import LEVEL_POLICIES, assign_level, estimate_rate
from rareid.deploy.ann import ann_candidates
from rareid.deploy.inference import list_images

if TYPE_CHECKING:
    from rareid.deploy.index import Backend, GalleryIndex

#: Gallery rows per chunk of the torch path (bounds the (Q, chunk) distance block).
TORCH_CHUNK_ROWS = 65536
#: Extra candidates the faiss path fetches, re-scored exactly, so float ties at the k-th place
#: resolve the same way as in the torch path.
FAISS_MARGIN = 8
#: Queries drawn on the rank sheet (the CSV and JSON hold them all).
SHEET_QUERIES = 20
#: Queries whose matches are printed (all are in the CSV and JSON).
PRINTED_QUERIES = 50
Verdict = Literal["same", "different", "uncalibrated"]


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def require_faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise ImportError(
            "the faiss backend needs faiss-cpu: pip install 'rareid[deploy]' (or use --backend torch)"
        ) from None
    return faiss


@dataclass
class SearchResult:
    """Top-k gallery positions and prefix distances per query (ascending distance)."""

    indices: torch.Tensor  # (Q, k) int64 gallery positions
    distances: torch.Tensor  # (Q, k) float32
    levels: torch.Tensor  # (Q,) the level each query was compared at


# ---------------------------------------------------------------------- distances
def prefix_bounds(split_sizes: Sequence[int]) -> list[int]:
    """Embedding length of each level (1..m at index 0..m-1)."""
    return np.cumsum([int(s) for s in split_sizes]).tolist()


def prefix_sq_norms(
    vectors: torch.Tensor, split_sizes: Sequence[int], chunk_rows: int = TORCH_CHUNK_ROWS
) -> torch.Tensor:
    """(N, m) squared norms of every level prefix (in row chunks: no (N, d) temporary)."""
    sizes = [int(s) for s in split_sizes]
    out = torch.empty(vectors.shape[0], len(sizes), dtype=vectors.dtype)
    for start in range(0, vectors.shape[0], chunk_rows):
        rows = vectors[start : start + chunk_rows]
        blocks = torch.split(rows * rows, sizes, dim=1)
        out[start : start + chunk_rows] = torch.cumsum(
            torch.stack([b.sum(1) for b in blocks], 1), 1
        )
    return out


def rescore(
    queries: torch.Tensor,
    levels: torch.Tensor,
    gallery: torch.Tensor,
    candidates: torch.Tensor,
    split_sizes: Sequence[int],
    metric: str,
) -> torch.Tensor:
    """Exact prefix distances (Q, c) of each query to its candidate gallery rows."""
    bounds = prefix_bounds(split_sizes)
    lengths = torch.tensor(bounds)[levels - 1]  # (Q,)
    keep = torch.arange(queries.shape[1])[None, :] < lengths[:, None]  # (Q, d)
    query_prefix = queries * keep
    gallery_prefix = gallery[candidates] * keep[:, None, :]  # (Q, c, d)
    if metric == "cosine":
        query_unit = query_prefix / query_prefix.norm(dim=1, keepdim=True).clamp_min(1e-12)
        gallery_unit = gallery_prefix / gallery_prefix.norm(dim=2, keepdim=True).clamp_min(1e-12)
        return (1 - torch.einsum("qd,qcd->qc", query_unit, gallery_unit)).clamp_min(0)
    return ((gallery_prefix - query_prefix[:, None, :]) ** 2).sum(2)


def _order(
    indices: torch.Tensor, distances: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort each row by (distance, gallery position) and keep ``k``."""
    by_position = torch.argsort(indices, dim=1, stable=True)
    indices, distances = indices.gather(1, by_position), distances.gather(1, by_position)
    by_distance = torch.argsort(distances, dim=1, stable=True)[:, :k]
    return indices.gather(1, by_distance), distances.gather(1, by_distance)


def torch_candidates(
    gallery: torch.Tensor,
    gallery_sq: torch.Tensor,
    queries: torch.Tensor,
    levels: torch.Tensor,
    split_sizes: Sequence[int],
    metric: str,
    count: int,
    chunk_rows: int = TORCH_CHUNK_ROWS,
) -> torch.Tensor:
    """(Q, count) nearest gallery positions by prefix distance, gallery scanned in chunks."""
    bounds = prefix_bounds(split_sizes)
    out = torch.empty(queries.shape[0], count, dtype=torch.long)
    for level in torch.unique(levels).tolist():
        rows = (levels == level).nonzero(as_tuple=True)[0]
        length = bounds[level - 1]
        prefix = queries[rows, :length]
        prefix_sq = (prefix * prefix).sum(1)
        best_dist = torch.empty(rows.numel(), 0)
        best_index = torch.empty(rows.numel(), 0, dtype=torch.long)
        for start in range(0, gallery.shape[0], chunk_rows):
            block = gallery[start : start + chunk_rows, :length]
            block_sq = gallery_sq[start : start + chunk_rows, level - 1]
            if metric == "cosine":
                norms = (prefix_sq.sqrt()[:, None] * block_sq.sqrt()[None, :]).clamp_min(1e-12)
                dist = 1 - (prefix @ block.T) / norms
            else:
                dist = torch.addmm(block_sq[None, :], prefix, block.T, alpha=-2.0)
                dist.add_(prefix_sq[:, None])
            take = min(count, dist.shape[1])
            values, positions = torch.topk(dist, take, dim=1, largest=False)
            best_dist = torch.cat([best_dist, values], 1)
            best_index = torch.cat([best_index, positions + start], 1)
            if best_dist.shape[1] > count:
                values, keep = torch.topk(best_dist, count, dim=1, largest=False)
                best_dist, best_index = values, best_index.gather(1, keep)
        out[rows] = best_index
    return out


class FaissPrefixIndex:
    """One flat inner-product faiss index of width ``d + m`` that ranks every level exactly."""

    def __init__(self, gallery: torch.Tensor, split_sizes: Sequence[int]) -> None:
        faiss = require_faiss()
        self.split_sizes = [int(s) for s in split_sizes]
        self.dim = int(gallery.shape[1])
        self.num_levels = len(self.split_sizes)
        self.index = faiss.IndexFlatIP(self.dim + self.num_levels)
        for start in range(0, gallery.shape[0], TORCH_CHUNK_ROWS):  # no full-size temporary
            chunk = gallery[start : start + TORCH_CHUNK_ROWS]
            rows = np.empty((chunk.shape[0], self.dim + self.num_levels), dtype=np.float32)
            rows[:, : self.dim] = chunk.numpy()
            rows[:, self.dim :] = prefix_sq_norms(chunk, self.split_sizes).numpy() * -0.5
            self.index.add(rows)

    def candidates(self, queries: torch.Tensor, levels: torch.Tensor, count: int) -> torch.Tensor:
        bounds = prefix_bounds(self.split_sizes)
        rows = np.zeros((queries.shape[0], self.dim + self.num_levels), dtype=np.float32)
        for position, level in enumerate(levels.tolist()):
            rows[position, : bounds[level - 1]] = queries[position, : bounds[level - 1]].numpy()
            rows[position, self.dim + level - 1] = 1.0
        _, found = self.index.search(rows, count)
        return torch.from_numpy(found.astype(np.int64))


def _faiss_for(index: GalleryIndex) -> FaissPrefixIndex:
    """The faiss index of ``index``'s embeddings, built once and kept with it."""
    cached = getattr(index, "_faiss", None)
    if cached is None or cached[0] != len(index):
        cached = (len(index), FaissPrefixIndex(index.embeddings, index.split_sizes))
        index._faiss = cached  # type: ignore[attr-defined]
    return cached[1]


def prefix_search(
    index: GalleryIndex,
    queries: torch.Tensor,
    levels: torch.Tensor | Sequence[int],
    k: int = 10,
    backend: Backend = "auto",
) -> SearchResult:
    """Exact top-``k`` of zero-padded queries at their levels against an HR gallery index.

    ``backend``: ``faiss`` (needs faiss-cpu and the Euclidean distance), ``torch``, or ``auto``
    (faiss when it is installed and applies, torch otherwise). Same results either way.
    """
    levels = torch.as_tensor(levels).long().reshape(-1)
    queries = torch.as_tensor(queries).detach().float().cpu()
    num_levels = index.num_levels
    if queries.ndim != 2 or queries.shape[1] != index.embeddings.shape[1]:
        raise ValueError(
            f"queries: expected (Q, {index.embeddings.shape[1]}) embeddings, got "
            f"{tuple(queries.shape)}"
        )
    if levels.numel() != queries.shape[0]:
        raise ValueError(f"levels: expected {queries.shape[0]} levels, got {levels.numel()}")
    if levels.numel() and (int(levels.min()) < 1 or int(levels.max()) > num_levels):
        raise ValueError(f"levels: expected values in 1..{num_levels}, got {levels.tolist()}")
    if k < 1:
        raise ValueError(f"k: expected a positive number of matches, got {k}")
    k = min(k, len(index))
    if len(index) == 0 or queries.shape[0] == 0:
        empty = torch.empty(queries.shape[0], 0)
        return SearchResult(empty.long(), empty, levels)
    use_faiss = backend == "faiss" or (
        backend == "auto" and index.metric == "euclidean" and faiss_available()
    )
    if use_faiss and index.metric != "euclidean":
        raise ValueError("the faiss backend ranks the euclidean distance only; use --backend torch")
    count = min(len(index), k + FAISS_MARGIN)
    found = ann_candidates(index, queries, levels, count) if backend == "auto" else None
    if found is not None:
        pass  # the approximate index's short list, re-scored exactly below
    elif use_faiss:
        found = _faiss_for(index).candidates(queries, levels, count)
    else:
        gallery_sq = getattr(index, "_gallery_sq", None)
        if gallery_sq is None or gallery_sq.shape[0] != len(index):
            gallery_sq = prefix_sq_norms(index.embeddings, index.split_sizes)
            index._gallery_sq = gallery_sq  # type: ignore[attr-defined]
        found = torch_candidates(
            index.embeddings, gallery_sq, queries, levels, index.split_sizes, index.metric, count
        )
    distances = rescore(queries, levels, index.embeddings, found, index.split_sizes, index.metric)
    indices, distances = _order(found, distances, k)
    return SearchResult(indices, distances.float(), levels)


# ---------------------------------------------------------------------- levels and verdicts
def query_level(
    height: int,
    rates: Sequence[float],
    reference_height: float,
    policy: str = "nearest",
    rate: float | None = None,
) -> tuple[float, int]:
    """(rate, level) of a query crop: its rate estimated from its height, or the given rate."""
    value = estimate_rate(height, reference_height) if rate is None else float(rate)
    return value, assign_level(value, rates, policy)


def threshold_for(calibration: dict[str, Any] | None, level: int, far: float) -> float | None:
    """The calibrated distance threshold of ``level`` at false-accept rate ``far`` (or None)."""
    if not calibration:
        return None
    entry = calibration.get("levels", {}).get(str(level))
    if entry is None:
        return None
    for key, value in entry["thresholds"].items():
        if math.isclose(float(key), far, rel_tol=1e-9):
            return float(value)
    return None


def verdict(distance: float, threshold: float | None) -> Verdict:
    if threshold is None:
        return "uncalibrated"
    return "same" if distance <= threshold else "different"


# ---------------------------------------------------------------------- outputs
def write_results(rows: list[dict[str, Any]], out_dir: Path) -> tuple[Path, Path]:
    """``results.csv`` and ``results.json`` (one row per query x rank)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / "results.csv", out_dir / "results.json"
    fields = list(rows[0]) if rows else ["query"]
    with open(csv_path, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    json_path.write_text(json.dumps(rows, indent=1))
    return csv_path, json_path


def draw_rank_sheet(
    queries: list[dict[str, Any]],
    matches: list[list[dict[str, Any]]],
    out_path: Path,
    max_queries: int = 20,
) -> Path:
    """PNG: one row per query (its crop at its own size, level) then its ranked matches with
    distance and verdict (green: same, red: different, grey: uncalibrated)."""
    import cv2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"same": "tab:green", "different": "tab:red", "uncalibrated": "0.5"}
    queries, matches = queries[:max_queries], matches[:max_queries]
    columns = 1 + max((len(ranked) for ranked in matches), default=0)
    figure, axes = plt.subplots(
        len(queries), columns, figsize=(1.3 * columns, 2.4 * len(queries)), squeeze=False
    )
    for row, (query, ranked) in enumerate(zip(queries, matches, strict=True)):
        for axis in axes[row]:
            axis.axis("off")
        image = cv2.cvtColor(cv2.imread(str(query["path"])), cv2.COLOR_BGR2RGB)
        axes[row][0].imshow(image, interpolation="nearest")
        axes[row][0].set_title(
            f"{Path(query['name']).name[:14]}\nlevel {query['level']} ({query['height']}px)",
            fontsize=6,
        )
        for col, match in enumerate(ranked, start=1):
            image = cv2.imread(str(match["path"]))
            if image is not None:
                axes[row][col].imshow(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
            axes[row][col].set_title(
                f"#{col} {match['distance']:.3g}\n{match['verdict']}",
                fontsize=6,
                color=colors[match["verdict"]],
            )
    figure.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_path, dpi=80)
    plt.close(figure)
    return out_path


# ---------------------------------------------------------------------- command line
def _query_paths(spec: str) -> list[Path]:
    path = Path(spec)
    if path.is_dir():
        return list_images(path)
    if path.is_file():
        return [path]
    raise FileNotFoundError(f"{spec!r} is neither an image file nor a folder")


def search_main(argv: Sequence[str]) -> int:
    """``rareid search``: rank an index for query crops; CSV, JSON and a rank-sheet PNG."""
    parser = argparse.ArgumentParser(
        prog="rareid search",
        description="Rank a gallery index for query crops, each at the level its size implies.",
    )
    parser.add_argument("--index", required=True, help="index file written by `rareid index`")
    parser.add_argument("--query", required=True, help="an image or a folder of images")
    parser.add_argument("--top-k", type=int, default=10, help="matches per query")
    parser.add_argument("--out", default="search_results", help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace earlier results there")
    parser.add_argument("--ckpt", help="checkpoint (default: the one the index was built with)")
    parser.add_argument(
        "--reference-height", type=float, help="height of a rate-1 crop (default: gallery median)"
    )
    parser.add_argument("--rate", type=float, help="use this rate for every query")
    parser.add_argument("--level", type=int, help="use this level for every query")
    parser.add_argument(
        "--level-policy", choices=LEVEL_POLICIES, help="default: the checkpoint's data.level_policy"
    )
    parser.add_argument("--far", type=float, default=1e-2, help="calibrated FAR of the verdict")
    parser.add_argument("--calibration", help="calibration JSON (default: the one in the index)")
    parser.add_argument(
        "--backend",
        choices=("auto", "torch", "faiss", "onnx"),
        default="auto",
        help="onnx: embed queries with --onnx, rank with faiss/torch",
    )
    parser.add_argument("--onnx", help="ONNX model of `rareid export` (for --backend onnx)")
    parser.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking")
    parser.add_argument("--rerank-k1", type=int, default=20, help="k-reciprocal neighbours")
    parser.add_argument("--rerank-k2", type=int, default=6, help="query expansion neighbours")
    parser.add_argument(
        "--rerank-lambda", type=float, default=0.3, help="weight of the original distance"
    )
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(list(argv))

    from rareid.deploy.backends import EmbeddingBackend, OnnxBackend, TorchBackend
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
    if args.backend == "onnx" and not args.onnx:
        parser.error("--backend onnx needs --onnx FILE (written by `rareid export`)")
    out_dir = Path(args.out)
    if not args.overwrite and any(
        (out_dir / name).exists() for name in ("results.csv", "results.json", "rank_sheet.png")
    ):
        parser.error(f"--out: {str(out_dir)!r} already holds search results; pass --overwrite")
    try:
        index = GalleryIndex.load(args.index)
        queries = _query_paths(args.query)
    except (FileNotFoundError, GalleryIndexError) as error:
        parser.error(str(error))
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
    policy = args.level_policy or index.level_policy
    readable, skipped = [], []
    images, infos = [], []
    for path in queries:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            skipped.append(path)
            continue
        height = int(image.shape[0])
        if args.level is not None:
            rate, level = float("nan"), args.level
        else:
            rate, level = query_level(height, index.rates, reference, policy, args.rate)
        images.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        readable.append(path)
        infos.append({"height": height, "width": int(image.shape[1]), "rate": rate, "level": level})
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
            runtime = TorchBackend(load_model(ckpt, resolve_device(args.device))[0])
        index.check_model(runtime)
        embeddings = runtime.embed(tensors, levels)
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
        threshold = threshold_for(calibration, info["level"], args.far)
        ranked = []
        for rank, (gallery_position, distance) in enumerate(
            zip(result.indices[position].tolist(), original[position].tolist(), strict=True),
            start=1,
        ):
            row = {
                "query": str(path),
                "query_height": info["height"],
                "rate": round(info["rate"], 4) if math.isfinite(info["rate"]) else "",
                "level": info["level"],
                "rank": rank,
                "gallery": index.paths[gallery_position],
                "distance": round(float(distance), 6),
                "threshold": "" if threshold is None else round(threshold, 6),
                "verdict": verdict(float(distance), threshold),
            }
            if args.rerank:
                row["rerank_distance"] = round(float(result.distances[position, rank - 1]), 6)
            rows.append(row)
            ranked.append({**row, "path": index.absolute_path(gallery_position)})
        sheet_queries.append({"path": path, "name": str(path), **info})
        sheet_matches.append(ranked)
    csv_path, json_path = write_results(rows, out_dir)
    sheet = draw_rank_sheet(
        sheet_queries, sheet_matches, out_dir / "rank_sheet.png", max_queries=SHEET_QUERIES
    )
    for query, ranked in list(zip(sheet_queries, sheet_matches, strict=True))[:PRINTED_QUERIES]:
        cells = "  ".join(
            f"{rank}. {match['gallery']} {match['distance']:.4g} {match['verdict']}"
            for rank, match in enumerate(ranked, start=1)
        )
        print(f"{Path(query['name']).name} (level {query['level']}): {cells}")
    if len(sheet_queries) > PRINTED_QUERIES:
        print(f"... {len(sheet_queries) - PRINTED_QUERIES} more queries in {csv_path}")
    per_level: dict[int, int] = {}
    for info in infos:
        per_level[info["level"]] = per_level.get(info["level"], 0) + 1
    print(
        f"{len(readable)} queries ({len(skipped)} unreadable skipped), levels "
        + ", ".join(f"{level}: {count}" for level, count in sorted(per_level.items()))
        + f"; reference height {reference:g}px"
    )
    if calibration is None:
        print("no calibration in the index: verdicts are 'uncalibrated' (run `rareid calibrate`)")
    else:
        for level in sorted(per_level):
            value = threshold_for(calibration, level, args.far)
            shown = "not calibrated" if value is None else f"{value:.4g}"
            print(f"level {level}: same person if distance <= {shown} (FAR {args.far:g})")
    shown = min(len(sheet_queries), SHEET_QUERIES)
    note = "" if shown == len(sheet_queries) else f" (the sheet shows the first {shown} queries)"
    print(f"wrote {csv_path}, {json_path} and {sheet}{note}")
    return 0
