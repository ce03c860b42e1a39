"""Training data pipeline throughput: rareid (OpenCV + albumentations) vs PIL + torchvision.

Both pipelines do the same work per sample, in one process (what one DataLoader worker does):
decode a Market-1501-size JPEG, make the HR view (bilinear resize to the input size, zero-pad
10 px, random crop, flip p=0.5, normalise) and an LR view (downsample by a random rate from
``rates`` with an area/box filter, bilinear back up, same augmentations), as float tensors.

    .venv/bin/python benchmarks/data_pipeline.py                # 2000 images, 5 rounds
    .venv/bin/python benchmarks/data_pipeline.py --images 500 --rounds 3

Threads are limited to one (``--threads``), as inside a DataLoader worker. The rounds of the
two pipelines are interleaved and the median round is reported, so that a noisy machine
affects both alike. Targets: rareid >= 1.5x the PIL pipeline and >= 1000 samples/s.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rareid.data.dataset import TrainDataset
from rareid.data.readers import ImageRecord
from rareid.data.transforms import IMAGENET_MEAN, IMAGENET_STD, TrainTransform


def write_images(folder: Path, count: int, height: int, width: int, seed: int) -> list[Path]:
    """Pedestrian-crop-like JPEGs: smooth colour blobs plus a little noise (realistic size)."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in tqdm(range(count), desc="writing JPEGs", unit="img"):
        coarse = rng.integers(0, 256, size=(8, 4, 3), dtype=np.uint8)
        image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
        noise = rng.normal(0, 8, size=image.shape)
        image = np.clip(image + noise, 0, 255).astype(np.uint8)
        path = folder / f"{i % 751:04d}_c{i % 6 + 1}s1_{i:06d}_01.jpg"
        cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


class PILPipeline:
    """The same training work with PIL + torchvision, the common re-ID baseline."""

    def __init__(self, paths, input_size, rates, seed: int = 0) -> None:
        self.paths = [str(p) for p in paths]
        self.input_size = input_size
        self.rates = list(rates)
        self.rng = random.Random(seed)
        self.augment = T.Compose(
            [
                T.Pad(10),
                T.RandomCrop(input_size),
                T.RandomHorizontalFlip(0.5),
                T.ToTensor(),
                T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        height, width = self.input_size
        image = Image.open(self.paths[index]).convert("RGB")
        hr = image.resize((width, height), Image.BILINEAR)
        rate = self.rng.choice(self.rates)
        if rate == 1:
            lr = hr
        else:
            w, h = image.size
            small = image.resize((max(1, round(w / rate)), max(1, round(h / rate))), Image.BOX)
            lr = small.resize((width, height), Image.BILINEAR)
        return self.augment(hr), self.augment(lr), rate


def time_round(dataset, count: int) -> float:
    """Samples per second of one pass over ``count`` samples of ``dataset``."""
    start = time.perf_counter()
    for i in range(count):
        dataset[i]
    return count / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000, help="JPEGs to write and read")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--native-size", type=int, nargs=2, default=(128, 64), metavar=("H", "W"))
    parser.add_argument("--input-size", type=int, nargs=2, default=(256, 128), metavar=("H", "W"))
    parser.add_argument("--rates", type=float, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--threads", type=int, default=1, help="torch/OpenCV threads (0 = cv2 off)")
    parser.add_argument("--workdir", type=str, default=None, help="where to write (default: temp)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.set_num_threads(max(1, args.threads))
    cv2.setNumThreads(args.threads if args.threads > 1 else 0)
    input_size = tuple(args.input_size)

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        paths = write_images(Path(tmp), args.images, *args.native_size, seed=args.seed)
        records = [ImageRecord(str(p), i % 751, i % 6) for i, p in enumerate(paths)]
        transform = TrainTransform(input_size, args.rates, seed=args.seed)
        rareid_ds = TrainDataset(records, transform, seed=args.seed)
        pil_ds = PILPipeline(paths, input_size, args.rates, seed=args.seed)

        # warm-up (page cache, lazy imports) and a shape check
        sample = rareid_ds[0]
        hr, lr, _ = pil_ds[0]
        assert sample["hr"].shape == hr.shape == (3, *input_size), (sample["hr"].shape, hr.shape)
        assert sample["lr"].shape == lr.shape and sample["hr"].dtype == hr.dtype == torch.float32
        time_round(rareid_ds, min(200, len(paths)))
        time_round(pil_ds, min(200, len(paths)))

        ours, theirs = [], []
        for _ in tqdm(range(args.rounds), desc="timing rounds", unit="round"):
            ours.append(time_round(rareid_ds, len(paths)))
            theirs.append(time_round(pil_ds, len(paths)))

    ours_s, theirs_s = statistics.median(ours), statistics.median(theirs)
    print(
        f"native {args.native_size[0]}x{args.native_size[1]} JPEG -> HR + LR views at "
        f"{input_size[0]}x{input_size[1]}, rates {args.rates}, {args.images} images x "
        f"{args.rounds} rounds, {args.threads} thread(s), one process"
    )
    print(f"rareid (cv2 + albumentations): {ours_s:8.0f} samples/s  (rounds: {_fmt(ours)})")
    print(f"PIL + torchvision:             {theirs_s:8.0f} samples/s  (rounds: {_fmt(theirs)})")
    print(f"ratio rareid / PIL:            {ours_s / theirs_s:8.2f}x")


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.0f}" for v in values)


if __name__ == "__main__":
    main()
