"""Training-step cost of rareid against a plain timm step, and bf16 against fp32, in one run.

A: a ``RAReIDModule`` training step (full method: every stage's masks active, mixed LR levels,
   varying-length embedding, identity + verification losses, Adam step) on ``--batch`` HR +
   ``--batch`` LR images.
B: a plain timm step of the same backbone on the same ``2 * --batch`` images: the timm model
   with rareid's last-stride setting (1 for ResNets, the re-ID trick the paper uses; the
   stride-2 original does 4x less work in its last stage), global pool, linear classifier,
   cross-entropy, Adam step.

Both run at fp32 and at bf16 autocast (``trainer.precision: bf16-mixed``), each optionally in
channels-last memory format, interleaved (warm-up, then alternating repetitions, medians), in
one process with the allocator setting ``rareid fit`` uses on the CPU. ``--compile`` adds the
same four steps with each model's forward through ``torch.compile`` and reports what compiling
costs (the warm-up's extra seconds) against what it saves per step: whether it pays within one
fit.

    .venv/bin/python benchmarks/training_speed.py                         # resnet10t, 128x64
    .venv/bin/python benchmarks/training_speed.py --backbone resnet50 --size 256 128 --batch 16
    .venv/bin/python benchmarks/training_speed.py --device cuda --iterations 20   # on a GPU
    .venv/bin/python benchmarks/training_speed.py --compile                    # + torch.compile

Targets: rareid <= 1.15x the plain timm step at the same precision; bf16 >= 1.6x faster than
fp32 for rareid. Ratios, not times, so they hold on any machine; a CPU without native bf16
(no AMX / AVX512-BF16) cannot reach the second one.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rareid.models.backbone import Backbone
from rareid.models.module import RAReIDModule
from rareid.runtime import keep_freed_memory

TARGETS = {"rareid / timm": 1.15, "fp32 / bf16": 1.6}


def batch_for(args: argparse.Namespace, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A P x K training dict: ``--batch`` HR and ``--batch`` LR images, LR levels 1..3."""
    size = (args.batch, 3, *args.size)
    batch = {
        "hr": torch.randn(size, generator=generator),
        "lr": torch.randn(size, generator=generator),
        "lr_level": torch.randint(1, 4, (args.batch,), generator=generator),
        "pid": torch.arange(args.batch) // 4 % args.num_classes,
        "camid": torch.zeros(args.batch, dtype=torch.long),
    }
    return {key: value.to(args.device) for key, value in batch.items()}


def rareid_step(
    args: argparse.Namespace, channels_last: bool, compiled: bool = False
) -> Callable[[dict], None]:
    model = RAReIDModule(
        backbone=args.backbone,
        num_classes=args.num_classes,
        embedding_dim=args.embedding_dim,
        img_size=tuple(args.size),
        channels_last=channels_last,
    ).to(args.device)
    for mask in model.masks.masks:
        mask.active.fill_(True)  # every stage masked: the most expensive phase
    model.train()
    if compiled:
        model.forward = torch.compile(model.forward)  # the training step calls self(...)
    optimizer = torch.optim.Adam(model.parameter_groups(), lr=1e-4)

    def step(batch: dict) -> None:
        loss = model.training_step(batch, 0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def timm_step(
    args: argparse.Namespace, channels_last: bool, compiled: bool = False
) -> Callable[[dict], None]:
    # The same timm network rareid builds (last stride included), without masks or heads.
    backbone = Backbone(args.backbone, img_size=tuple(args.size))
    model = nn.Sequential(backbone, nn.Linear(backbone.num_features, args.num_classes))
    model = model.to(args.device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    if compiled:
        model = torch.compile(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    criterion = nn.CrossEntropyLoss()

    def step(batch: dict) -> None:
        images = torch.cat([batch["hr"], batch["lr"]])
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        logits = model(images)
        loss = criterion(logits.float(), torch.cat([batch["pid"], batch["pid"]]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def timed(step: Callable[[dict], None], batch: dict, bf16: bool, device: torch.device) -> float:
    context = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    synchronize = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    synchronize()  # a GPU step is timed from an idle device to its last kernel
    start = time.perf_counter()
    with context:
        step(batch)
    synchronize()
    return time.perf_counter() - start


def print_compile_payback(
    median: dict[tuple[str, str], float], warmup_s: dict[tuple[str, str], float], warmup: int
) -> None:
    """Per model and precision: the step time saved by compiling, the compile time (the
    compiled warm-up's excess over ``warmup`` plain steps) and the steps it takes to repay it."""
    print("\n| step | precision | compiled / eager | compile s | steps to repay |")
    print("|---|---|---:|---:|---|")
    for name in ("rareid", "timm"):
        for precision in ("fp32", "bf16"):
            eager, compiled = median[(name, precision)], median[(f"{name} compiled", precision)]
            cost = warmup_s[(f"{name} compiled", precision)] - warmup * eager
            saved = eager - compiled
            repay = f"{cost / saved:.0f}" if saved > 0 else "never (not faster)"
            print(f"| {name} | {precision} | {compiled / eager:.2f}x | {cost:.1f} | {repay} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="resnet10t")
    parser.add_argument("--size", type=int, nargs=2, default=[128, 64], metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=32, help="HR images (as many LR) per step")
    parser.add_argument("--num-classes", type=int, default=90)
    parser.add_argument("--embedding-dim", type=int, default=1024)
    parser.add_argument("--iterations", type=int, default=8, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--channels-last", action="store_true", help="both models channels-last")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd steps")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--device", type=torch.device, default="cpu", help="cpu, cuda, cuda:1")
    args = parser.parse_args(argv)
    keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    batch = batch_for(args, torch.Generator().manual_seed(0))
    builders = [("rareid", rareid_step, False), ("timm", timm_step, False)]
    if args.compile:
        builders += [("rareid compiled", rareid_step, True), ("timm compiled", timm_step, True)]
    variants = {
        (name, precision): build(args, args.channels_last, compiled)
        for name, build, compiled in builders
        for precision in ("fp32", "bf16")
    }
    times: dict[tuple[str, str], list[float]] = {key: [] for key in variants}
    warmup_s: dict[tuple[str, str], float] = {}
    for key, step in tqdm(variants.items(), desc="warm-up (compiles)", unit="variant"):
        warmup_s[key] = sum(
            timed(step, batch, key[1] == "bf16", args.device) for _ in range(args.warmup)
        )
    for _ in tqdm(range(args.iterations), desc="interleaved steps", unit="round"):
        for key, step in variants.items():
            times[key].append(timed(step, batch, key[1] == "bf16", args.device))
    median = {key: statistics.median(values) for key, values in times.items()}
    print(
        f"\n{args.backbone} at {args.size[0]}x{args.size[1]}, {args.batch} HR + {args.batch} LR "
        f"images a step on {args.device}, channels-last {args.channels_last}, "
        f"{torch.get_num_threads()} threads, "
        f"median of {args.iterations} steps\n"
    )
    print("| step | fp32 (s) | bf16 (s) | fp32 / bf16 |")
    print("|---|---|---|---|")
    for name, _, _ in builders:
        fp32, bf16 = median[(name, "fp32")], median[(name, "bf16")]
        print(f"| {name} | {fp32:.3f} | {bf16:.3f} | {fp32 / bf16:.2f}x |")
    if args.compile:
        print_compile_payback(median, warmup_s, args.warmup)
    ratios = {
        "rareid / timm (fp32)": median[("rareid", "fp32")] / median[("timm", "fp32")],
        "rareid / timm (bf16)": median[("rareid", "bf16")] / median[("timm", "bf16")],
        "fp32 / bf16 (rareid)": median[("rareid", "fp32")] / median[("rareid", "bf16")],
    }
    print()
    for label, ratio in ratios.items():
        target_key = label.split(" (")[0]
        target = TARGETS[target_key]
        met = ratio <= target if target_key == "rareid / timm" else ratio >= target
        sign = "<=" if target_key == "rareid / timm" else ">="
        print(f"{label}: {ratio:.2f}x (target {sign} {target}x: {'met' if met else 'MISSED'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
