"""Speed of the synthetic dataset writer, against the floor cost of JPEG encode + write.

Usage::

    python benchmarks/synthetic_speed.py [--identities 200] [--seed 0] [--dir /dev/shm] [--all-cores]

Writes the dataset to a temporary folder under ``--dir`` (removed afterwards), then writes the
same number of blank 128x64 JPEGs with cv2 (quality 95) to another one, and prints images/s for
both and their ratio. It also re-renders the same images and JPEG-encodes them in memory (no
disk), since file-system writes are the noisiest part on a shared machine. By default the process
is pinned to one CPU core and OpenCV to one thread, so the figures are single-core throughput
(target: >= 1,000 images/s written).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from rareid.data.synthetic import (
    IMAGE_SIZE,
    JPEG_QUALITY,
    SyntheticWorld,
    write_synthetic_dataset,
)

MARKET = re.compile(r"^(-?\d+)_c(\d+)s(\d+)_(\d+)_(\d+)\.jpg$")


def blank_baseline(folder: Path, n: int) -> float:
    """Seconds to encode and write ``n`` blank 128x64 JPEGs (Market-style names)."""
    folder.mkdir(parents=True)
    img = np.zeros((*IMAGE_SIZE, 3), dtype=np.uint8)
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    t0 = time.perf_counter()
    for i in range(n):
        cv2.imwrite(str(folder / f"{i % 9999:04d}_c1s1_{i:06d}_01.jpg"), img, params)
    return time.perf_counter() - t0


def render_encode_in_memory(root: Path, identities: int, seed: int, cameras: int) -> float:
    """Seconds to re-render every image of the written dataset and JPEG-encode it, no disk."""
    keys = []
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        for p in (root / folder).iterdir():
            m = MARKET.match(p.name)
            assert m is not None, p.name
            keys.append((int(m.group(1)), int(m.group(2)) - 1, int(m.group(4))))
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    t0 = time.perf_counter()
    world = SyntheticWorld(identities, seed, cameras, identities // 2)
    for pid, cam, frame in keys:
        rgb = world.render(pid, cam, frame)
        cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--identities", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", default=None, help="where to write (default: system temp)")
    parser.add_argument("--all-cores", action="store_true", help="do not pin to one core")
    args = parser.parse_args()

    if not args.all_cores:
        cv2.setNumThreads(1)
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    tmp = Path(tempfile.mkdtemp(prefix="rareid_synth_speed_", dir=args.dir))
    try:
        t0 = time.perf_counter()
        summary = write_synthetic_dataset(
            tmp / "synthetic", identities=args.identities, seed=args.seed, progress=False
        )
        t_synth = time.perf_counter() - t0
        n = summary.total_images
        t_mem = render_encode_in_memory(
            tmp / "synthetic", args.identities, args.seed, summary.cameras
        )
        t_blank = blank_baseline(tmp / "blank", n)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    synth_rate, blank_rate = n / t_synth, n / t_blank
    cores = "all cores" if args.all_cores else "1 core, cv2 1 thread"
    where = args.dir or tempfile.gettempdir()
    print(f"synthetic writer: {n} images ({args.identities} identities) in {t_synth:.2f} s")
    print(f"  written under {where}")
    print(f"  -> {synth_rate:,.0f} images/s ({cores}, incl. world setup, JPEG encode and write)")
    print(f"  render + JPEG encode in memory (no disk): {n / t_mem:,.0f} images/s")
    print(f"blank JPEG baseline: {n} images in {t_blank:.2f} s -> {blank_rate:,.0f} images/s")
    print(f"ratio synthetic / blank: {synth_rate / blank_rate:.2f} (1.0 = only encode+write cost)")


if __name__ == "__main__":
    main()
