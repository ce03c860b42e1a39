"""Gallery search at scale: memory, build time and per-query latency of the exact faiss and torch
paths of :class:`rareid.deploy.search.exact.Searcher` and of the approximate indexes of
:mod:`rareid.deploy.gallery.ann` (``--ann``), whether the exact paths return the same top-k, and the
recall@k of the approximate ones against exact search.

    .venv/bin/python benchmarks/search.py                    # 1 M x 512 and 200 k x 2048
    .venv/bin/python benchmarks/search.py --sizes 100000x512 --ann ivf-flat hnsw ivf-pq
    .venv/bin/python benchmarks/search.py --help

Each size runs in a fresh subprocess so that its memory figures are its own. The gallery is
stored once as an HR (level m) index with m = 4 equal sub-vectors; queries are zero-padded at
random levels 1..4. ``--data gaussian``: i.i.d. Gaussian rows (no neighbourhood structure: the
worst case of any approximate index); ``--data clustered`` (default): each row is the centre of
one of N/20 people plus noise and each query is a noisy view of a gallery row, the structure a
re-ID gallery has. Latency is per query (batches of one, the interactive case) and per query in
one batch of all queries (throughput).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rareid.deploy.gallery.ann import AnnIndex, faiss_available  # noqa: E402
from rareid.deploy.gallery.index import GalleryIndex  # noqa: E402
from rareid.deploy.model.inference import Preprocess  # noqa: E402
from rareid.deploy.search.exact import Searcher  # noqa: E402

LEVELS = 4


def rss_gb() -> float:
    """Resident memory of this process (GiB), from /proc."""
    with open("/proc/self/statm") as stream:
        pages = int(stream.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**30


#: Gallery images per person of the clustered data.
IMAGES_PER_PERSON = 20
#: Spread of a person's images around the person's centre (the centres have unit spread).
NOISE = 0.5


def random_gallery(size: int, dim: int, seed: int, data: str = "gaussian") -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    gallery = torch.empty(size, dim)
    centres = torch.randn(max(1, size // IMAGES_PER_PERSON), dim, generator=generator)
    for start in range(0, size, 65536):  # filled in place: no second full-size temporary
        rows = gallery[start : start + 65536]
        rows.copy_(torch.randn(rows.shape, generator=generator))
        if data == "clustered":
            owner = torch.randint(0, centres.shape[0], (rows.shape[0],), generator=generator)
            rows.mul_(NOISE).add_(centres[owner])
    return gallery


def random_queries(
    count: int, dim: int, seed: int, gallery: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded queries at random levels; near a random gallery row when ``gallery`` is given."""
    generator = torch.Generator().manual_seed(seed + 1)
    levels = torch.randint(1, LEVELS + 1, (count,), generator=generator)
    queries = torch.randn(count, dim, generator=generator)
    if gallery is not None:
        rows = torch.randint(0, gallery.shape[0], (count,), generator=generator)
        queries = gallery[rows] + NOISE * queries
    lengths = (levels * (dim // LEVELS))[:, None]
    return queries * (torch.arange(dim)[None, :] < lengths), levels


def recall(found: torch.Tensor, exact: torch.Tensor) -> float:
    """Share of the exact top-k positions found, over all queries."""
    hits = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(found, exact, strict=True))
    return hits / max(1, exact.numel())


def time_search(index: GalleryIndex, q, levels, k: int, engine: str) -> dict[str, Any]:
    searcher = Searcher(index)
    latencies = []
    for row in range(q.shape[0]):
        tick = time.perf_counter()
        searcher.search(q[row : row + 1], levels[row : row + 1], k, engine)
        latencies.append(time.perf_counter() - tick)
    tick = time.perf_counter()
    result = searcher.search(q, levels, k, engine)
    batched = (time.perf_counter() - tick) / q.shape[0]
    return {
        "result": result,
        "latency_ms_median": 1e3 * float(np.median(latencies)),
        "latency_ms_p90": 1e3 * float(np.percentile(latencies, 90)),
        "batched_ms_per_query": 1e3 * batched,
    }


def float16_storage_effect(
    index: GalleryIndex, q: torch.Tensor, levels: torch.Tensor, k: int, reference
) -> dict[str, float]:
    """How ``rareid index --dtype float16`` changes the exact top-k: the stored embeddings are
    rounded to float16 and read back as float32, so only the rounding can move a rank."""
    full = index.embeddings
    index.embeddings = full.half().float()
    try:
        rounded = Searcher(index).search(q, levels, k, "torch")
    finally:
        index.embeddings = full
    same = rounded.indices == reference.indices
    return {
        "recall": recall(rounded.indices, reference.indices),
        "same_top_k_ranks": float(same.float().mean()),
        "same_top_1": float(same[:, 0].float().mean()),
        "max_distance_difference": float((rounded.distances - reference.distances).abs().max()),
    }


def run_one(
    size: int,
    dim: int,
    queries: int,
    k: int,
    seed: int,
    data: str = "gaussian",
    ann: Sequence[str] = (),
    exact: Sequence[str] = ("torch", "faiss"),
    nprobe: int | None = None,
    shortlist: int = 100,
) -> dict[str, Any]:
    """Measure one gallery size in this process."""
    start_rss = rss_gb()
    tick = time.perf_counter()
    gallery = random_gallery(size, dim, seed, data)
    index = GalleryIndex(
        embeddings=gallery,
        paths=[],
        sizes=np.empty((0, 2), dtype=np.int64),
        levels=torch.full((size,), LEVELS),
        root=".",
        rates=[1.0, 2.0, 3.0, 4.0],
        split_sizes=[dim // LEVELS] * LEVELS,
        metric="euclidean",
        preprocess=Preprocess((256, 128)),
    )
    out: dict[str, Any] = {
        "gallery": size,
        "dim": dim,
        "queries": queries,
        "k": k,
        "data": data,
        "threads": torch.get_num_threads(),
        "gallery_gb": gallery.numel() * 4 / 2**30,
        "generate_s": time.perf_counter() - tick,
    }
    q, levels = random_queries(queries, dim, seed, gallery if data == "clustered" else None)
    results = {}
    for backend in exact:
        if backend == "faiss" and not faiss_available():
            out["faiss"] = "not installed"
            continue
        searcher = Searcher(index)
        before = rss_gb()
        tick = time.perf_counter()
        # build: the faiss index (d + m wide) or the torch path's prefix norms, done by the first
        # search; a one-query search triggers it
        searcher.search(q[:1], levels[:1], k, backend)
        build = time.perf_counter() - tick
        added = rss_gb() - before
        latencies = []
        for row in range(queries):
            tick = time.perf_counter()
            searcher.search(q[row : row + 1], levels[row : row + 1], k, backend)
            latencies.append(time.perf_counter() - tick)
        tick = time.perf_counter()
        results[backend] = searcher.search(q, levels, k, backend)
        batched = (time.perf_counter() - tick) / queries
        out[backend] = {
            "build_s": build,
            "added_memory_gb": added,
            "latency_ms_median": 1e3 * float(np.median(latencies)),
            "latency_ms_p90": 1e3 * float(np.percentile(latencies, 90)),
            "batched_ms_per_query": 1e3 * batched,
        }
    if "torch" in results and "faiss" in results:
        same = results["torch"].indices == results["faiss"].indices
        out["same_top_k_ranks"] = float(same.float().mean())
        out["same_top_k_queries"] = float(same.all(1).float().mean())
        out["max_distance_difference"] = float(
            (results["torch"].distances - results["faiss"].distances).abs().max()
        )
    reference = results.get("faiss") or results.get("torch")
    if reference is not None:
        out["float16_storage"] = float16_storage_effect(index, q, levels, k, reference)
    for kind in ann:
        before = rss_gb()
        tick = time.perf_counter()
        index.ann = AnnIndex.build(
            gallery, index.split_sizes, "euclidean", kind, shortlist=shortlist, nprobe=nprobe
        )
        build = time.perf_counter() - tick
        added = rss_gb() - before
        timed = time_search(index, q, levels, k, "auto")
        found = timed.pop("result")
        out[kind] = {
            "build_s": build,
            "added_memory_gb": added,
            "factories": index.ann.factories,
            "nprobe": index.ann.nprobe,
            "shortlist": index.ann.shortlist,
            **timed,
        }
        if reference is not None:
            out[kind]["recall"] = recall(found.indices, reference.indices)
        index.ann = None
    out["peak_rss_gb"] = rss_gb()
    out["baseline_rss_gb"] = start_rss
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--sizes", nargs="+", default=["1000000x512", "200000x2048"], help="gallery sizes as NxD"
    )
    parser.add_argument("--queries", type=int, default=50, help="queries per size")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="CPU threads of torch and faiss (default: all)")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--data", choices=("gaussian", "clustered"), default="clustered")
    parser.add_argument(
        "--ann",
        nargs="*",
        default=[],
        choices=("ivf-flat", "hnsw", "ivf-pq"),
        help="approximate indexes to measure against exact search",
    )
    parser.add_argument(
        "--exact",
        nargs="+",
        default=["torch", "faiss"],
        choices=("torch", "faiss"),
        help="exact paths to measure (the last one is the recall reference if faiss is absent)",
    )
    parser.add_argument("--nprobe", type=int, help="IVF lists probed (default: rareid's)")
    parser.add_argument("--shortlist", type=int, default=100, help="candidates re-scored exactly")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one size in-process
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        if faiss_available():
            import faiss

            faiss.omp_set_num_threads(args.threads)
    if args.one:
        size, dim = (int(v) for v in args.one.split("x"))
        figures = run_one(
            size,
            dim,
            args.queries,
            args.k,
            args.seed,
            args.data,
            args.ann,
            args.exact,
            args.nprobe,
            args.shortlist,
        )
        print(json.dumps(figures))
        return
    rows = []
    for spec in args.sizes:
        command = [
            sys.executable,
            __file__,
            "--one",
            spec,
            "--queries",
            str(args.queries),
            "--k",
            str(args.k),
            "--seed",
            str(args.seed),
        ]
        if args.threads:
            command += ["--threads", str(args.threads)]
        command += ["--data", args.data, "--shortlist", str(args.shortlist), "--exact", *args.exact]
        if args.ann:
            command += ["--ann", *args.ann]
        if args.nprobe:
            command += ["--nprobe", str(args.nprobe)]
        finished = subprocess.run(command, capture_output=True, text=True, check=True)
        rows.append(json.loads(finished.stdout.strip().splitlines()[-1]))
    for row in rows:
        print(
            f"\ngallery {row['gallery']:,} x {row['dim']} ({row['gallery_gb']:.2f} GiB float32, "
            f"{row['data']}), "
            f"{row['queries']} queries at levels 1-4, top-{row['k']}, {row['threads']} threads"
        )
        for backend in ("torch", "faiss", *args.ann):
            entry = row.get(backend)
            if not isinstance(entry, dict):
                print(f"  {backend:5s}: {entry}")
                continue
            print(
                f"  {backend:8s}: build {entry['build_s']:.2f} s, +{entry['added_memory_gb']:.2f} GiB, "
                f"latency median {entry['latency_ms_median']:.2f} ms (p90 "
                f"{entry['latency_ms_p90']:.2f} ms), batched {entry['batched_ms_per_query']:.2f} "
                "ms/query"
                + (
                    f", recall@{row['k']} {entry['recall']:.3f} ({entry['factories'][-1]}, "
                    f"nprobe {entry['nprobe']}, short list {entry['shortlist']})"
                    if "recall" in entry
                    else ""
                )
            )
        exact_ms = [
            row[name]["latency_ms_median"]
            for name in ("torch", "faiss")
            if isinstance(row.get(name), dict)
        ]
        for kind in args.ann:
            entry = row.get(kind)
            if isinstance(entry, dict) and exact_ms:
                print(
                    f"  {kind:8s}: {min(exact_ms) / entry['latency_ms_median']:.1f}x "
                    "faster per query than the faster exact path"
                )
        if "float16_storage" in row:
            half = row["float16_storage"]
            print(
                f"  float16 storage: recall@{row['k']} {half['recall']:.4f} against float32, "
                f"same top-1 {100 * half['same_top_1']:.2f}%, same ranks "
                f"{100 * half['same_top_k_ranks']:.2f}%, max distance difference "
                f"{half['max_distance_difference']:.2e}"
            )
        if "same_top_k_ranks" in row:
            print(
                f"  same top-{row['k']}: {100 * row['same_top_k_ranks']:.2f}% of ranks, "
                f"{100 * row['same_top_k_queries']:.1f}% of queries identical; max distance "
                f"difference {row['max_distance_difference']:.2e}; peak RSS {row['peak_rss_gb']:.2f} GiB"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
