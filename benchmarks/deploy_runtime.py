"""Serving without torch: one query end to end (process start to results written) through the
torch path and the torch-free ONNX path of ``rareid search``, on a small index and a 100 k
gallery; and the per-query latency of one crop through PyTorch, onnxruntime float32 and int8,
and OpenVINO float32 and int8, with the int8 drift table, all in one run on this CPU.

    .venv/bin/python benchmarks/deploy_runtime.py --out runs/bench_deploy

The model is the benchmark's (resnet10t, 1024-d embedding with its neck, 128x64 input, rates
1..4) with the shipped warm-start backbone (``assets/warm_start_strong.safetensors``) and an
untrained head: timing does not depend on training, and the drift of a warm backbone is a fair
picture of int8's. Gallery, calibration and held-out crops are test people of the built-in
synthetic world. Each end-to-end figure is the median of ``--repeats`` fresh processes
(``python -m rareid search ... --no-sheets``: drawing a rank sheet imports matplotlib).
Prints Markdown tables and writes ``deploy_runtime.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rareid.data.synthetic import SyntheticWorld  # noqa: E402
from rareid.deploy.gallery.record import IndexRecord  # noqa: E402
from rareid.deploy.model.backend_onnx import OnnxBackend  # noqa: E402
from rareid.deploy.model.backend_torch import TorchBackend  # noqa: E402
from rareid.deploy.model.inference import load_model  # noqa: E402

WARM_START = ROOT / "assets" / "warm_start_strong.safetensors"


def write_checkpoint(path: Path) -> Path:
    """The benchmark's model with the warm-start backbone, as a checkpoint file."""
    from rareid.models.module import RAReIDModule

    torch.manual_seed(0)
    model = RAReIDModule(
        backbone="resnet10t",
        embedding_dim=1024,
        embedding_norm=True,
        img_size=(128, 64),
        rates=(1, 2, 3, 4),
        num_classes=100,
        weights_path=str(WARM_START),
    )
    torch.save(
        {
            "state_dict": model.state_dict(),
            "hyper_parameters": dict(model.hparams),
            "datamodule_hyper_parameters": {
                "dataset": "synthetic",
                "rates": [1, 2, 3, 4],
                "mean": [0.485, 0.456, 0.406],
                "std": [0.229, 0.224, 0.225],
            },
        },
        path,
    )
    return path


def write_crops(root: Path, people: int, frames: int) -> tuple[Path, Path, Path, Path]:
    """Gallery, calibration and held-out folders (labels CSV) and one small query crop."""
    world = SyntheticWorld(identities=200, seed=0, cameras=2, train_identities=100)
    test_people = list(range(101, 101 + people))
    folders = {name: root / name for name in ("gallery", "calibration", "heldout")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    rows = ["path,person,camera"]
    for pid in test_people:
        bgr = cv2.cvtColor(world.render(pid, 0, 1), cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(folders["gallery"] / f"{pid}.png"), bgr)
        for frame in range(frames):
            image = cv2.cvtColor(world.render(pid, frame % 2, 10 + frame), cv2.COLOR_RGB2BGR)
            cv2.imwrite(str(folders["calibration"] / f"{pid}_{frame}.png"), image)
            name = f"{pid}_{frame}.png"
            cv2.imwrite(str(folders["heldout"] / name), image)
            rows.append(f"{name},{pid},c{frame % 2}")
    (folders["heldout"] / "labels.csv").write_text("\n".join(rows) + "\n")
    query = root / "query.png"
    small = cv2.resize(world.render(test_people[0], 1, 40), (16, 40), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(query), cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    return folders["gallery"], folders["calibration"], folders["heldout"] / "labels.csv", query


def rareid(*argv: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "rareid", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"rareid {' '.join(argv)} failed:\n{done.stderr}")
    return done.stdout


def one_query_seconds(argv: list[str], repeats: int) -> float:
    """Median wall time of ``rareid search`` in a fresh process."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        rareid(*argv, "--overwrite")
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def big_index(small: Path, out: Path, rows: int) -> Path:
    """An index of ``rows`` gallery vectors (the small index's, repeated with noise)."""
    record = IndexRecord.load(small)
    rng = np.random.default_rng(0)
    take = rng.integers(0, len(record), rows)
    record.embeddings = record.embeddings[take] + rng.normal(
        0, 0.05, (rows, record.embeddings.shape[1])
    ).astype(np.float32)
    record.paths = [f"person_{number:06d}.png" for number in range(rows)]
    record.sizes = record.sizes[take]
    record.stats = np.full((rows, 2), -1, dtype=np.int64)
    record.levels = record.levels[take]
    record.save(out)
    return out


def latency_ms(embed: Any, batch: np.ndarray, repeats: int) -> float:
    """Median milliseconds of one call (after two warm-up calls)."""
    embed(batch)
    embed(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        embed(batch)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench_deploy")
    parser.add_argument("--people", type=int, default=40)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--big", type=int, default=100_000, help="rows of the large gallery")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--latency-repeats", type=int, default=50)
    parser.add_argument(
        "--ckpt", help="a trained checkpoint to measure instead of the warm-start model"
    )
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    ckpt = Path(args.ckpt) if args.ckpt else write_checkpoint(out / "bench.ckpt")
    gallery, calibration, heldout, query = write_crops(out / "crops", args.people, args.frames)
    models = {
        "fp32.onnx": ["--format", "onnx"],
        "int8.onnx": ["--quantize", "int8"],
        "fp32.xml": ["--format", "openvino"],
        "int8.xml": ["--format", "openvino", "--quantize", "int8"],
    }
    printed = {}
    for name, extra in models.items():
        printed[name] = rareid(
            "export", "--ckpt", str(ckpt), "--out", str(out / name), "--overwrite",
            "--calibration", str(calibration), "--heldout", str(heldout), "--max-drop", "100",
            *extra,
        )  # fmt: skip
    small = out / "small.npz"
    for path in (small, out / "small_torch.npz"):
        path.unlink(missing_ok=True)
    rareid("index", "--backend", "onnx", "--onnx", str(out / "fp32.onnx"), "--gallery",
           str(gallery), "--out", str(small), "--no-progress")  # fmt: skip
    rareid("index", "--ckpt", str(ckpt), "--gallery", str(gallery), "--out",
           str(out / "small_torch.npz"), "--no-progress", "--num-workers", "0")  # fmt: skip
    big = big_index(small, out / "big.npz", args.big)
    big_torch = out / "big_torch.npz"
    record = IndexRecord.load(big)
    record.checkpoint_path = str(ckpt.resolve())
    record.save(big_torch)
    search = ["search", "--query", str(query), "--no-sheets", "--out", str(out / "found")]
    onnx = ["--backend", "onnx", "--onnx", str(out / "fp32.onnx")]
    end_to_end = {
        "torch, small": one_query_seconds(
            [*search, "--index", str(out / "small_torch.npz")], args.repeats
        ),
        "onnx, small": one_query_seconds([*search, "--index", str(small), *onnx], args.repeats),
        "torch, big": one_query_seconds([*search, "--index", str(big_torch)], args.repeats),
        "onnx, big": one_query_seconds([*search, "--index", str(big), *onnx], args.repeats),
    }

    model, preprocess = load_model(ckpt)
    batch = preprocess.arrays([cv2.cvtColor(cv2.imread(str(query)), cv2.COLOR_BGR2RGB)])
    level = np.array([1])
    from rareid.deploy.model.backend_openvino import OpenVinoBackend

    runtimes = {
        "PyTorch fp32": TorchBackend(model),
        "onnxruntime fp32": OnnxBackend(out / "fp32.onnx", threads=1),
        "onnxruntime int8": OnnxBackend(out / "int8.onnx", threads=1),
        "OpenVINO fp32": OpenVinoBackend(out / "fp32.xml", threads=1),
        "OpenVINO int8": OpenVinoBackend(out / "int8.xml", threads=1),
    }
    latency = {
        name: latency_ms(
            lambda images, r=runtime: r.embed_arrays(images, level), batch, args.latency_repeats
        )
        for name, runtime in runtimes.items()
    }
    sizes = {name: (out / name).stat().st_size / 2**20 for name in models}
    sizes["fp32.xml"] += (out / "fp32.bin").stat().st_size / 2**20
    sizes["int8.xml"] += (out / "int8.bin").stat().st_size / 2**20

    print(f"## One query end to end (median of {args.repeats} processes, --no-sheets)\n")
    small_rows = IndexRecord.load(small).embeddings.shape[0]
    print("| gallery | torch path | ONNX path (no torch) | ratio |\n|---|---|---|---|")
    for label, torch_key, onnx_key in (
        (f"{small_rows} images", "torch, small", "onnx, small"),
        (f"{args.big:,} vectors", "torch, big", "onnx, big"),
    ):
        ratio = end_to_end[torch_key] / end_to_end[onnx_key]
        print(f"| {label} | {end_to_end[torch_key]:.2f} s | {end_to_end[onnx_key]:.2f} s | "
              f"{ratio:.1f}x |")  # fmt: skip
    print("\n## One crop, batch of one, one thread (median ms)\n")
    print("| runtime | ms per query | vs PyTorch | model size |\n|---|---|---|---|")
    files = {"onnxruntime fp32": "fp32.onnx", "onnxruntime int8": "int8.onnx",
             "OpenVINO fp32": "fp32.xml", "OpenVINO int8": "int8.xml"}  # fmt: skip
    for name, value in latency.items():
        size = f"{sizes[files[name]]:.1f} MiB" if name in files else ""
        print(f"| {name} | {value:.2f} | {latency['PyTorch fp32'] / value:.2f}x | {size} |")
    for name in ("int8.onnx", "int8.xml"):
        print(f"\n## Drift of {name}\n")
        print(
            "\n".join(line for line in printed[name].splitlines() if line.startswith(("|", "most")))
        )
    (out / "deploy_runtime.json").write_text(
        json.dumps(
            {
                "end_to_end_s": end_to_end,
                "latency_ms": latency,
                "sizes_mib": sizes,
                "exports": printed,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
