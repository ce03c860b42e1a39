"""Evaluation speed and memory at Market-1501 scale.

    .venv/bin/python benchmarks/evaluation.py                 # CPU, Market scale (a few minutes)
    .venv/bin/python benchmarks/evaluation.py --device cuda   # rareid's ranking on a GPU
    .venv/bin/python benchmarks/evaluation.py --help          # sizes, trials, repeats

Measures, each part in a fresh subprocess so that its peak memory is its own:
  (a) the rank evaluation of a multi-shot distance matrix (3,368 x 15,913) three ways:
      ``rareid.evaluation.evaluate_rank``; fast-reid 1.4.0's compiled Cython evaluator
      (``rank_cy.pyx``, downloaded with ``pip download`` and cythonized in a temporary folder
      with Cython from pip; skipped with a note when that cannot be done, e.g. offline or
      without a C compiler); and the plain per-query NumPy reference of tests/test_metrics.py
      (timed on a subset of queries and extrapolated linearly). rareid and the reference must
      give the same numbers on that subset; fast-reid sorts unstably and sums in float32, so
      its numbers are compared with a tolerance;
  (b) ``level_distances`` (queries at random levels) against one plain ``torch.mm``;
  (c) the whole single-shot multi-trial MLR protocol through ``MLRMetric``.
Embeddings are synthetic but realistic for ranking: identity centres plus per-image noise
(LR queries zero-padded by level), so distances are spread like a trained model's, not uniform.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rareid.evaluation import MLRMetric, evaluate_rank, level_distances  # noqa: E402
from rareid.evaluation.report import format_results_table  # noqa: E402

#: rareid's evaluate_rank against fast-reid's compiled evaluator, on CPU.
TARGET_FASTREID_SPEEDUP = 5.0
TARGET_MEMORY_GB = 1.5
TARGET_DISTANCE_RATIO = 1.25
FASTREID = "fastreid==1.4.0"
RANK_CY = "fastreid/evaluation/rank_cylib/rank_cy.pyx"
BUILD_SCRIPT = """
import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

extension = Extension("rank_cy", ["rank_cy.pyx"], include_dirs=[np.get_include()])
setup(name="rank_cy", ext_modules=cythonize([extension], quiet=True))
"""


def _status_gb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 2**20  # KiB
    except OSError:
        pass
    return None


def rss_gb() -> float:
    """Current resident memory (falls back to the peak where /proc is missing)."""
    value = _status_gb("VmRSS")
    return value if value is not None else peak_gb()


def peak_gb() -> float:
    """Peak resident memory since the last :func:`reset_peak` (process start otherwise)."""
    value = _status_gb("VmHWM")
    if value is not None:
        return value
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def reset_peak() -> bool:
    """Reset the peak-RSS mark (Linux clear_refs), so a peak belongs to what runs next."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def reference_eval():
    """The per-query NumPy reference, loaded from the test file so both stay the same."""
    spec = importlib.util.spec_from_file_location("_ref", ROOT / "tests" / "test_metrics.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reference_eval


def best_of(fn, repeats: int) -> tuple[float, Any]:
    """Best wall time of ``repeats`` calls, and the result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def timed(fn, repeats: int) -> tuple[float, float, Any]:
    """Best wall time and best process CPU time (all threads) of ``repeats`` calls after one
    untimed warm-up call, and the result. CPU time is what a call costs on a shared machine,
    where other processes stretch the wall time."""
    fn()
    wall = cpu = float("inf")
    out = None
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall = min(wall, time.perf_counter() - w0)
        cpu = min(cpu, time.process_time() - c0)
    return wall, cpu, out


# ----------------------------------------------------------------------------- fast-reid
def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed: {tail[0]}")


def build_fastreid(folder: Path) -> str:
    """Build fast-reid's Cython rank evaluator in ``folder``; return "" or why it could not."""
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    try:
        _run([*pip, "download", "--no-deps", "--quiet", FASTREID, "-d", "wheel"], folder)
        wheel = next((folder / "wheel").glob("fastreid-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            (folder / "rank_cy.pyx").write_bytes(archive.read(RANK_CY))
        env = dict(os.environ)
        if importlib.util.find_spec("Cython") is None:  # Cython from pip, outside the venv
            _run([*pip, "install", "--quiet", "--target", "cython", "cython"], folder)
            paths = [str(folder / "cython"), env.get("PYTHONPATH", "")]
            env["PYTHONPATH"] = os.pathsep.join(path for path in paths if path)
        (folder / "build_rank_cy.py").write_text(BUILD_SCRIPT)
        _run([sys.executable, "build_rank_cy.py", "build_ext", "--inplace"], folder, env)
        if not list(folder.glob("rank_cy*.so")) and not list(folder.glob("rank_cy*.pyd")):
            return "the build produced no rank_cy module"
    except (RuntimeError, StopIteration, KeyError, OSError) as err:
        return str(err) or type(err).__name__
    return ""


# ----------------------------------------------------------------------------- data
def make_data(args: argparse.Namespace, out: Path) -> None:
    """Synthetic multi-shot evaluation set: ids + distractors (pid 0), 6 cameras, levels 1..m."""
    rng = np.random.default_rng(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    d, m = args.dim, args.levels
    centers = torch.randn(args.ids + 1, d, generator=g) * args.signal
    g_pids = rng.integers(0, args.ids + 1, args.gallery)  # 0 = distractor
    g_pids[: args.ids] = np.arange(1, args.ids + 1)  # every identity has gallery images
    q_pids = rng.integers(1, args.ids + 1, args.queries)
    g_cams = rng.integers(0, args.cams, args.gallery)
    q_cams = rng.integers(0, args.cams, args.queries)
    q_levels = rng.integers(1, m + 1, args.queries)
    gallery = centers[g_pids] + torch.randn(args.gallery, d, generator=g)
    distractor = torch.from_numpy(g_pids == 0)
    gallery[distractor] = torch.randn(int(distractor.sum()), d, generator=g) * (1 + args.signal)
    query = centers[q_pids] + torch.randn(args.queries, d, generator=g)
    sizes = split_sizes(d, m)
    bounds = np.cumsum(sizes)
    for k in range(1, m):
        query[torch.from_numpy(q_levels == k), bounds[k - 1] :] = 0  # zero padding
    np.savez(
        out / "ids.npz",
        q_pids=q_pids,
        g_pids=g_pids,
        q_cams=q_cams,
        g_cams=g_cams,
        q_levels=q_levels,
    )
    torch.save({"query": query, "gallery": gallery}, out / "emb.pt")
    dist = level_distances(query, torch.from_numpy(q_levels), gallery, None, sizes)
    np.save(out / "dist.npy", dist.numpy())


def dist_gb(args: argparse.Namespace) -> float:
    return args.queries * args.gallery * 4 / 2**30


def split_sizes(d: int, m: int) -> list[int]:
    base = d // m
    return [base] * (m - 1) + [d - base * (m - 1)]


# ----------------------------------------------------------------------------- parts
def part_a(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    ids = np.load(work / "ids.npz")
    dist = np.load(work / "dist.npy")
    q_pids, g_pids, q_cams, g_cams = ids["q_pids"], ids["g_pids"], ids["q_cams"], ids["g_cams"]
    labels = (q_pids, g_pids, q_cams, g_cams)
    device = torch.device(args.device)
    matrix = dist if device.type == "cpu" else torch.from_numpy(dist).to(device)
    exact_peak = reset_peak()
    base = rss_gb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds, cpu, (cmc, mean_ap) = timed(  # returns NumPy/float: the device is synchronised
        lambda: evaluate_rank(matrix, *labels, max_rank=args.max_rank), args.repeats
    )
    peak = peak_gb()
    gpu_peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    one_thread_seconds = one_thread_cpu = None
    if device.type == "cpu" and torch.get_num_threads() > 1:  # as fast-reid: one core
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        one_thread_seconds, one_thread_cpu, _ = timed(
            lambda: evaluate_rank(matrix, *labels, max_rank=args.max_rank), args.repeats
        )
        torch.set_num_threads(threads)
    out: dict[str, Any] = {
        "seconds": seconds,
        "cpu": cpu,
        "one_thread_seconds": one_thread_seconds,
        "one_thread_cpu": one_thread_cpu,
        "rank1": float(cmc[0]),
        "mAP": mean_ap,
        "base_gb": base,
        "peak_gb": peak,
        "exact_peak": exact_peak,
        "gpu_peak_gb": gpu_peak,
        "fastreid_seconds": None,
    }
    fastreid_dir = work / "fastreid"
    if list(fastreid_dir.glob("rank_cy*")):
        sys.path.insert(0, str(fastreid_dir))
        import rank_cy  # built by build_fastreid

        fr_seconds, fr_cpu, (fr_cmc, fr_ap, _) = timed(
            lambda: rank_cy.evaluate_cy(dist, *labels, args.max_rank), args.repeats
        )
        out["fastreid_seconds"] = fr_seconds
        out["fastreid_cpu"] = fr_cpu
        out["fastreid_max_cmc_diff"] = float(np.abs(fr_cmc - cmc).max())
        out["fastreid_map_diff"] = abs(float(np.mean(fr_ap)) - mean_ap)
    n = min(args.ref_queries, len(q_pids))
    ref = reference_eval()
    ref_subset, ref_cpu, (ref_cmc, ref_ap) = timed(  # best of the same number of runs
        lambda: ref(dist[:n], q_pids[:n], g_pids, q_cams[:n], g_cams, args.max_rank), args.repeats
    )
    sub_cmc, sub_ap = evaluate_rank(
        dist[:n], q_pids[:n], g_pids, q_cams[:n], g_cams, max_rank=args.max_rank
    )
    out |= {
        "ref_subset_queries": n,
        "ref_subset_seconds": ref_subset,
        "ref_extrapolated_seconds": ref_subset * len(q_pids) / n,
        "ref_extrapolated_cpu": ref_cpu * len(q_pids) / n,
        "cmc_identical": bool(np.array_equal(sub_cmc, ref_cmc)),
        "max_abs_map_diff": abs(sub_ap - ref_ap),
    }
    return out


def part_b(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    emb = torch.load(work / "emb.pt")
    q, g = emb["query"], emb["gallery"]
    q_levels = torch.from_numpy(np.load(work / "ids.npz")["q_levels"])
    sizes = split_sizes(args.dim, args.levels)
    # Interleaved, best of N each: both see the same machine load.
    all_m = torch.full_like(q_levels, args.levels)  # worst case: every query full length
    mm_s = ld_s = full_s = float("inf")
    for _ in range(args.repeats):
        mm_s = min(mm_s, best_of(lambda: torch.mm(q, g.T), 1)[0])
        ld_s = min(ld_s, best_of(lambda: level_distances(q, q_levels, g, None, sizes), 1)[0])
        full_s = min(full_s, best_of(lambda: level_distances(q, all_m, g, None, sizes), 1)[0])
    g_levels = torch.full((g.shape[0],), args.levels)
    g_levels[::5] = 1  # a gallery with mixed levels exercises the (level, level) blocks
    mixed_s, _ = best_of(lambda: level_distances(q, q_levels, g, g_levels, sizes), 1)
    return {
        "mm_seconds": mm_s,
        "level_seconds": ld_s,
        "full_level_seconds": full_s,
        "mixed_gallery_seconds": mixed_s,
    }


def part_c(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Single-shot, ``trials`` trials: per trial one random gallery image per identity, every
    query degraded to a random level 1..m-1; HR reference queries at level m."""
    emb = torch.load(work / "emb.pt")
    ids = np.load(work / "ids.npz")
    rng = np.random.default_rng(args.seed + 1)
    g = torch.Generator().manual_seed(args.seed + 1)
    m, sizes = args.levels, split_sizes(args.dim, args.levels)
    bounds = np.cumsum(sizes)
    g_pids = ids["g_pids"]
    bits = np.zeros(len(g_pids), dtype=np.int64)
    by_pid: dict[int, np.ndarray] = {}
    for i, p in enumerate(g_pids):
        by_pid.setdefault(int(p), []).append(i)
    for t in range(args.trials):
        for p, rows in by_pid.items():
            if p > 0:
                bits[rng.choice(rows)] |= 1 << t
    nq = len(ids["q_pids"])
    hr_query = emb["query"]  # HR reference queries (role 2) at full length
    parts = {
        "embeddings": [emb["gallery"], hr_query],
        "levels": [np.full(len(g_pids), m), np.full(nq, m)],
        "pids": [g_pids, ids["q_pids"]],
        "camids": [ids["g_cams"], ids["q_cams"]],
        "roles": [np.zeros(len(g_pids), int), np.full(nq, 2)],
        "trials": [np.full(len(g_pids), -1), np.full(nq, -1)],
        "gallery_trials": [bits, np.zeros(nq, int)],
    }
    for t in range(args.trials):
        levels = rng.integers(1, m, nq)
        q = emb["query"] + 0.5 * torch.randn(hr_query.shape, generator=g)
        for k in range(1, m):
            q[torch.from_numpy(levels == k), bounds[k - 1] :] = 0
        for key, value in (
            ("embeddings", q),
            ("levels", levels),
            ("pids", ids["q_pids"]),
            ("camids", ids["q_cams"]),
            ("roles", np.ones(nq, int)),
            ("trials", np.full(nq, t)),
            ("gallery_trials", np.zeros(nq, int)),
        ):
            parts[key].append(value)
    data = {
        k: torch.cat([torch.as_tensor(v) for v in vs]).to(
            torch.float32 if k == "embeddings" else torch.int64
        )
        for k, vs in parts.items()
    }
    n = data["pids"].shape[0]
    data["indices"] = torch.arange(n)
    del emb, parts
    metric = MLRMetric(sizes, rates=[float(r) for r in range(1, m + 1)])
    t0 = time.perf_counter()
    batch = 256
    for a in range(0, n, batch):
        metric.update(*(data[k][a : a + batch] for k in MLRMetric.STATES))
    t_update = time.perf_counter() - t0
    t1 = time.perf_counter()
    results = metric.compute()
    t_compute = time.perf_counter() - t1
    table = format_results_table(results, range(1, m + 1))
    return {
        "samples": n,
        "update_seconds": t_update,
        "compute_seconds": t_compute,
        "total_seconds": time.perf_counter() - t0,
        "table": table,
        "peak_gb": peak_gb(),
    }


PARTS = {"a": part_a, "b": part_b, "c": part_c}


# ----------------------------------------------------------------------------- driver
def run_part(name: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--part", name, "--workdir", str(work), *sys.argv[1:]]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"part {name} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--queries", type=int, default=3368)
    p.add_argument("--gallery", type=int, default=15913)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--ids", type=int, default=750, help="identities (plus distractors, pid 0)")
    p.add_argument("--cams", type=int, default=6)
    p.add_argument("--levels", type=int, default=4, help="m resolution levels")
    p.add_argument("--signal", type=float, default=0.4, help="identity centre scale vs noise 1")
    p.add_argument("--ref-queries", type=int, default=300, help="queries timed for the reference")
    p.add_argument("--max-rank", type=int, default=50, help="CMC length (fast-reid's default)")
    p.add_argument(
        "--no-fastreid",
        dest="fastreid",
        action="store_false",
        help="do not download and build fast-reid's Cython evaluator",
    )
    p.add_argument(
        "--parts", default="abc", help="parts to run: a (ranking), b (distances), c (protocol)"
    )
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3, help="best of N timings")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument(
        "--device", default="cpu", help="device of the distance matrix in (a), e.g. cuda"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--part", choices=sorted(PARTS), help=argparse.SUPPRESS)
    p.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.part:
        print(json.dumps(PARTS[args.part](args, args.workdir)))
        return

    print(
        f"rareid evaluation benchmark: {args.queries} queries x {args.gallery} gallery, "
        f"d={args.dim}, m={args.levels}, {args.ids} ids + distractors, {args.cams} cameras; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs"
    )
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="rareid-bench-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        make_data(args, work)
        print(f"data + distance matrix built in {time.perf_counter() - t0:.1f} s")
        (work / "fastreid").mkdir()
        fastreid_note = "not asked for (--no-fastreid)"
        if args.fastreid:
            t1 = time.perf_counter()
            fastreid_note = build_fastreid(work / "fastreid")
            print(
                "fast-reid's rank_cy.pyx "
                + (f"not built: {fastreid_note}" if fastreid_note else "built")
                + f" ({time.perf_counter() - t1:.0f} s)"
            )
        print()

        a = run_part("a", args, work)
        print(f"(a) rank evaluation, multi-shot, max_rank {args.max_rank}")
        print(
            f"    best of {args.repeats} after a warm-up; wall s / CPU s (all threads; the "
            "figure that holds on a busy machine)"
        )
        rows = [(f"rareid evaluate_rank, {args.device}, {threads} threads", "")]
        if a["one_thread_seconds"] is not None:
            rows.append(("rareid evaluate_rank, cpu, 1 thread", "one_thread_"))
        if a["fastreid_seconds"] is not None:
            rows.append(("fast-reid 1.4.0 compiled Cython, 1 thread", "fastreid_"))
        rows.append(
            (
                f"NumPy per-query reference (x{args.queries}/{a['ref_subset_queries']})",
                "ref_extrapolated_",
            )
        )
        for name, key in rows:
            wall = a[f"{key}seconds"]
            cpu_s = a[f"{key}cpu"]
            print(f"    {name:<52} {wall:8.3f} s / {cpu_s:8.3f} s")
        if a["fastreid_seconds"] is None:
            print(f"    fast-reid Cython evaluator: skipped ({fastreid_note})")
        else:
            fr, fr_cpu = a["fastreid_seconds"], a["fastreid_cpu"]
            print(
                f"    rareid speed-up over fast-reid (target >= {TARGET_FASTREID_SPEEDUP:.0f}x on "
                f"CPU): wall {fr / a['seconds']:.2f}x, CPU {fr_cpu / a['cpu']:.2f}x"
                + (
                    f"; 1 thread: wall {fr / a['one_thread_seconds']:.2f}x, CPU "
                    f"{fr_cpu / a['one_thread_cpu']:.2f}x"
                    if a["one_thread_seconds"] is not None
                    else ""
                )
            )
            print(
                f"    fast-reid vs rareid numbers: max |CMC diff| {a['fastreid_max_cmc_diff']:.1e}, "
                f"|mAP diff| {a['fastreid_map_diff']:.1e} (fast-reid: unstable sort, float32)"
            )
        print(
            f"    rareid over the reference: wall "
            f"{a['ref_extrapolated_seconds'] / a['seconds']:.1f}x, CPU "
            f"{a['ref_extrapolated_cpu'] / a['cpu']:.1f}x (reference timed on the first "
            f"{a['ref_subset_queries']} queries, extrapolated linearly)"
        )
        print(
            f"    rareid vs the reference on that subset: CMC identical={a['cmc_identical']}, "
            f"|mAP diff|={a['max_abs_map_diff']:.1e}"
        )
        print(f"    rank-1 {100 * a['rank1']:.1f}%, mAP {100 * a['mAP']:.1f}%")
        extra = a["peak_gb"] - a["base_gb"]
        print(
            f"    peak RSS of the process during evaluate_rank: {a['peak_gb']:.2f} GB "
            f"(target <= {TARGET_MEMORY_GB} GB); before the call {a['base_gb']:.2f} GB "
            f"(Python + torch + the {dist_gb(args):.2f} GB distance matrix), so evaluate_rank "
            f"itself adds {extra:.2f} GB"
            + ("" if a["exact_peak"] else " (peak not resettable here: ru_maxrss since start)")
        )
        if a["gpu_peak_gb"] is not None:
            print(f"    peak GPU memory: {a['gpu_peak_gb']:.2f} GB (the matrix included)")
        print()
        if "b" not in args.parts:
            print(f"total benchmark time {time.perf_counter() - t0:.0f} s")
            return

        b = run_part("b", args, work)
        ratio = b["level_seconds"] / b["mm_seconds"]
        print("(b) level_distances vs one plain torch.mm (Q x d @ d x G)")
        print(f"    torch.mm: {b['mm_seconds']:.3f} s, level_distances: {b['level_seconds']:.3f} s")
        print(f"    ratio: {ratio:.2f} (target <= {TARGET_DISTANCE_RATIO})")
        print(
            f"    all queries at level {args.levels} (no prefix saving): "
            f"{b['full_level_seconds']:.3f} s, ratio {b['full_level_seconds'] / b['mm_seconds']:.2f}"
        )
        print(f"    (mixed-level gallery, 1 run: {b['mixed_gallery_seconds']:.3f} s)\n")

        if "c" not in args.parts:
            print(f"total benchmark time {time.perf_counter() - t0:.0f} s")
            return
        c = run_part("c", args, work)
        print(
            f"(c) single-shot {args.trials}-trial protocol through MLRMetric ({c['samples']} samples)"
        )
        print(
            f"    update: {c['update_seconds']:.2f} s, compute: {c['compute_seconds']:.2f} s, "
            f"total: {c['total_seconds']:.2f} s, peak RSS {c['peak_gb']:.2f} GB"
        )
        print(c["table"])
        print(f"\ntotal benchmark time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
