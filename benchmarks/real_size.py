"""The paper's configs at Market-1501 size, stage by stage: wall time, throughput, peak memory.

Runs on the Market-sized synthetic set (``rareid synth --like market1501 --out
data/market1501``: 751 / 12,936 train, 3,368 queries, 15,913 gallery images once junk is
dropped, 6 cameras) with ``conf/paper.yaml`` + ``conf/market1501/resnet50.yaml``:

- ``load``: the training loader alone (decode, augment, LR views) with ``--workers`` workers;
- ``step``: one training step of rareid against the same plain timm network at the same batch
  and precision (``benchmarks/training_speed.py``), per backbone of ``--backbones``;
- ``fit``: ``rareid fit`` for 4 epochs of ``--fit-steps`` steps with the progressive phases
  moved to every epoch (three phase changes) and its ``last.ckpt``;
- ``test``: ``rareid test``, the full 10-trial MLR protocol (52,961 embeddings);
- ``index`` / ``search``: ``rareid index`` of the 15,913-image gallery and ``rareid search`` of
  the 3,368 queries.

Every stage runs in its own process; peak memory is that process tree's largest resident set
(``wait4``), and on a GPU also ``torch.cuda.max_memory_allocated`` of in-process stages.
``--fraction F`` embeds only a fraction of the test, index and search images with the paper's
backbone and extrapolates (said in the table); ``--eval-backbone`` additionally runs those three
stages on every image with a small backbone, so the evaluation and search code is exercised at
full size whatever the backbone costs.

    python benchmarks/real_size.py                                    # CPU, reduced (see table)
    python benchmarks/real_size.py --stages load step --backbones resnet50
    python benchmarks/real_size.py --gpu-slot                         # one GPU, < 15 minutes

``--gpu-slot`` is the GPU run: full batch, fp32 and bf16, ResNet-50 and Swin-B steps, a longer
fit, the test and index at full size, and the projected time of the paper's 120-epoch recipe on
1 GPU and on 4 (DDP, linear scaling assumed). Without a GPU it says so and runs its
cheapest stage on the CPU, so the logic is checked anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAPER = ["--config", "conf/paper.yaml", "--config", "conf/market1501/resnet50.yaml"]
STAGES = ("load", "step", "fit", "test", "index", "search")
EPOCHS = 120  # the paper's recipe
TEST_SAMPLES = 15_913 + 3_368 + 10 * 3_368  # gallery, HR queries, 10 trials of LR queries


@dataclass
class Row:
    """One line of the table."""

    stage: str
    wall_s: float
    throughput: str
    peak_gib: float
    note: str = ""
    extra: dict = field(default_factory=dict)


def run_child(
    argv: list[str], env_threads: int, log: Path | None = None
) -> tuple[float, float, int, str]:
    """Run a command; its wall time, the peak RSS (GiB) of its process tree, status, output
    (also written to ``log``)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(env_threads)}
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if log is not None:
        log.write_text(output)
    return wall, usage.ru_maxrss / 2**20, proc.returncode, output


def rareid(*argv: str, **options: object) -> list[str]:
    """``rareid ARGV --option value ...``, options given as ``{"--option": value}``."""
    flags = [str(part) for pair in options.items() for part in pair]
    return [sys.executable, "-m", "rareid", *argv, *flags]


def in_process(stage: str, args: argparse.Namespace, **options: object) -> list[str]:
    """This script, running one in-process stage in a child and printing a JSON result."""
    return [
        sys.executable,
        __file__,
        "--child",
        json.dumps({"stage": stage, **options}),
        *(["--device", args.device]),
    ]


# -- in-process stages (run in a child) --------------------------------------------------------


def child_load(options: dict, device: str) -> dict:
    """Images/s of the training loader alone (worker start-up excluded)."""
    from rareid.data.datamodule import ReIDDataModule

    data = ReIDDataModule(
        dataset="market1501",
        root=options["root"],
        num_workers=options["workers"],
        input_size=(256, 128),
        p=8,
        k=4,
    )
    data.setup("fit")
    loader = iter(data.train_dataloader())
    next(loader)
    images, start = 0, time.perf_counter()
    for _ in range(options["batches"]):
        batch = next(loader)
        images += batch["hr"].shape[0] + batch["lr"].shape[0]
    seconds = time.perf_counter() - start
    return {
        "images_per_s": images / seconds,
        "seconds": seconds,
        "images": images,
        "steps_per_epoch": len(data.train_dataloader()),
    }


def child_step(options: dict, device: str) -> dict:
    """Seconds per step, rareid and plain timm, per precision (medians), and peak GPU memory."""
    import statistics

    import torch

    from benchmarks.training_speed import batch_for, rareid_step, timed, timm_step

    setting = argparse.Namespace(
        backbone=options["backbone"],
        num_classes=751,
        embedding_dim=2048,
        size=(256, 128),
        batch=options["batch"],
        device=torch.device(device),
    )
    batch = batch_for(setting, torch.Generator().manual_seed(0))
    result: dict = {}
    steps = {}
    for name, build in (("rareid", rareid_step), ("timm", timm_step)):
        steps[name] = build(setting, options["channels_last"])
        for precision in options["precisions"]:
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            for _ in range(options["warmup"]):
                timed(steps[name], batch, precision == "bf16", setting.device)
            if device == "cuda":  # rareid's is alone on the device: its own peak
                result[f"{name}/{precision}/gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
    # Interleaved, so that a change in the machine's load hits both alike.
    times: dict[str, list[float]] = {}
    for _ in range(options["steps"]):
        for precision in options["precisions"]:
            for name, step in steps.items():
                seconds = timed(step, batch, precision == "bf16", setting.device)
                times.setdefault(f"{name}/{precision}", []).append(seconds)
    result.update({key: statistics.median(values) for key, values in times.items()})
    return result


CHILDREN = {"load": child_load, "step": child_step}


# -- the stages ---------------------------------------------------------------------------------


def stage_load(args: argparse.Namespace) -> list[Row]:
    options = {"root": args.root, "workers": args.workers, "batches": args.load_batches}
    wall, peak, status, output = run_child(in_process("load", args, **options), args.threads)
    result = parse_child(output, status, "load")
    args.steps_per_epoch = result["steps_per_epoch"]
    note = f"{args.workers} workers, {args.load_batches} batches of 32 HR + 32 LR"
    return [Row("load", wall, f"{result['images_per_s']:.0f} img/s", peak, note, result)]


def stage_step(args: argparse.Namespace) -> list[Row]:
    rows = []
    for backbone in args.backbones:
        options = {
            "backbone": backbone,
            "batch": args.batch,
            "steps": args.step_iterations,
            "warmup": args.step_warmup,
            "precisions": args.precisions,
            "channels_last": backbone.startswith("resnet"),
        }
        wall, peak, status, output = run_child(in_process("step", args, **options), args.threads)
        result = parse_child(output, status, f"step {backbone}")
        for precision in args.precisions:
            ours, plain = result[f"rareid/{precision}"], result[f"timm/{precision}"]
            images = 2 * args.batch
            gpu = result.get(f"rareid/{precision}/gpu_gib")  # timm's counts rareid's weights
            note = (
                f"{backbone} {precision}, {args.batch}+{args.batch} images, median of "
                f"{args.step_iterations}: rareid {ours:.3f} s, timm {plain:.3f} s, "
                f"ratio {ours / plain:.2f}x (target <= 1.15x)"
            )
            if gpu is not None:
                note += f", GPU peak {gpu:.1f} GiB (rareid alone)"
            rows.append(
                Row(
                    f"step {backbone.split('_')[0]} {precision}",
                    wall,
                    f"{images / ours:.1f} vs {images / plain:.1f} img/s",
                    peak,
                    note,
                    {"rareid_s": ours, "timm_s": plain, "gpu_gib": gpu},
                )
            )
            if backbone == "resnet50":
                args.step_seconds[precision] = ours
    return rows


def fit_command(args: argparse.Namespace, backbone: str, out: Path, steps: int) -> list[str]:
    command = rareid(
        "fit",
        *PAPER,
        **{
            "--data.root": args.root,
            "--model.pretrained": "false",
            "--data.num_workers": args.workers,
            "--trainer.max_epochs": 4,
            "--trainer.limit_train_batches": steps,
            "--progressive.phase_epochs": "[0, 1, 2, 3]",
            "--trainer.default_root_dir": out,
            "--trainer.accelerator": "gpu" if args.device == "cuda" else "cpu",
            "--trainer.precision": args.fit_precision,
        },
    )
    if backbone != "resnet50":
        command += ["--model.backbone", backbone, "--data.input_size", "[128, 64]"]
    return command


def active_masks(checkpoint: Path) -> str:
    """Which stages' masks the checkpoint has switched on (the phases it went through)."""
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    keys = sorted(key for key in state if key.startswith("masks.") and key.endswith(".active"))
    return "".join("1" if bool(state[key].all()) else "0" for key in keys)


def stage_fit(args: argparse.Namespace) -> list[Row]:
    rows = []
    for backbone, steps in ((args.paper_backbone, args.fit_steps), (args.eval_backbone, 1)):
        if backbone is None:
            continue
        out = args.out / f"fit_{backbone}"
        shutil.rmtree(out, ignore_errors=True)
        command = fit_command(args, backbone, out, steps)
        wall, peak, status, output = run_child(command, args.threads, out.with_suffix(".log"))
        checkpoint = out / "checkpoints" / "last.ckpt"
        if status != 0 or not checkpoint.is_file():
            raise SystemExit(f"fit {backbone} failed ({status}):\n{output[-3000:]}")
        args.checkpoints[backbone] = checkpoint
        rows.append(
            Row(
                f"fit {backbone}",
                wall,
                f"{4 * steps * 2 * args.batch / wall:.1f} img/s",
                peak,
                f"4 epochs x {steps} step(s) (the recipe: 120 x {args.steps_per_epoch or '?'}), "
                f"a mask phase per epoch; last.ckpt {checkpoint.stat().st_size / 2**20:.0f} MiB, "
                f"masks active in it: {active_masks(checkpoint)}; start-up included",
            )
        )
    return rows


def stage_test(args: argparse.Namespace) -> list[Row]:
    rows = []
    for backbone, fraction in ((args.paper_backbone, args.fraction), (args.eval_backbone, 1.0)):
        if backbone not in args.checkpoints:
            continue
        command = rareid(
            "test",
            *PAPER,
            **{
                "--data.root": args.root,
                "--model.pretrained": "false",
                "--data.num_workers": args.workers,
                "--ckpt_path": args.checkpoints[backbone],
                "--trainer.default_root_dir": args.out / f"test_{backbone}",
                "--report.overwrite": "true",
                "--trainer.accelerator": "gpu" if args.device == "cuda" else "cpu",
                "--trainer.precision": args.fit_precision,
            },
        )
        if fraction < 1.0:
            command += ["--trainer.limit_test_batches", str(fraction)]
        if backbone != "resnet50":
            command += ["--model.backbone", backbone, "--data.input_size", "[128, 64]"]
        wall, peak, status, output = run_child(
            command, args.threads, args.out / f"test_{backbone}.log"
        )
        if status != 0:
            raise SystemExit(f"test {backbone} failed ({status}):\n{output[-3000:]}")
        # Lightning keeps int(fraction x batches) batches of data.eval_batch_size (64)
        samples = TEST_SAMPLES if fraction >= 1 else int(fraction * -(-TEST_SAMPLES // 64)) * 64
        note = f"10 trials, {samples:.0f} of {TEST_SAMPLES} embeddings"
        if fraction < 1.0:
            note += (
                f" (the first batches: gallery images); all {TEST_SAMPLES} at this rate, "
                f"start-up included: {wall * TEST_SAMPLES / samples / 60:.0f} min, an upper bound"
            )
        rows.append(Row(f"test {backbone}", wall, f"{samples / wall:.1f} img/s", peak, note))
    return rows


def _subset(folder: Path, out: Path, fraction: float, skip_junk: bool) -> tuple[Path, int]:
    """Hard links to every ``1/fraction``-th image of ``folder`` (junk dropped, as the readers
    do), so a fraction can be indexed or searched."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    files = sorted(p for p in folder.iterdir() if not (skip_junk and p.name.startswith("-1_")))
    step = max(1, round(1 / fraction))
    for path in files[::step]:
        os.link(path, out / path.name)
    return out, len(files[::step])


def stage_index(args: argparse.Namespace, search: bool) -> list[Row]:
    market = Path(args.root) / "market1501"
    rows = []
    for backbone, fraction in ((args.paper_backbone, args.fraction), (args.eval_backbone, 1.0)):
        if backbone not in args.checkpoints:
            continue
        index = args.out / f"gallery_{backbone}.npz"
        if not search:
            folder, count = _subset(
                market / "bounding_box_test",
                args.out / f"gallery_{backbone}",
                fraction,
                skip_junk=True,
            )
            command = rareid(
                "index",
                "--no-progress",
                **{
                    "--ckpt": args.checkpoints[backbone],
                    "--gallery": folder,
                    "--out": index,
                    "--num-workers": args.workers,
                    "--device": args.device,
                },
            )
            what = "gallery images"
        else:
            folder, count = _subset(
                market / "query", args.out / f"query_{backbone}", fraction, skip_junk=False
            )
            command = rareid(
                "search",
                "--overwrite",
                "--no-sheets",
                **{
                    "--index": index,
                    "--query": folder,
                    "--top-k": 10,
                    "--out": args.out / f"search_{backbone}",
                    "--device": args.device,
                },
            )
            what = "queries"
        log = args.out / f"{'search' if search else 'index'}_{backbone}.log"
        wall, peak, status, output = run_child(command, args.threads, log)
        if status != 0:
            raise SystemExit(
                f"{'search' if search else 'index'} {backbone} failed ({status}):\n{output[-3000:]}"
            )
        note = f"{count} {what}"
        if fraction < 1.0:
            note += f" (1/{round(1 / fraction)}); all: {wall / fraction / 60:.1f} min extrapolated"
        name = f"{'search' if search else 'index'} {backbone}"
        rows.append(Row(name, wall, f"{count / wall:.1f} img/s", peak, note))
    return rows


def projection(args: argparse.Namespace) -> list[str]:
    """The paper's 120-epoch recipe from the measured ResNet-50 step, 1 device and 4 (DDP)."""
    lines = []
    steps = args.steps_per_epoch or 12_936 // 32
    for precision, seconds in args.step_seconds.items():
        hours = EPOCHS * steps * seconds / 3600
        lines.append(
            f"projected 120-epoch ResNet-50 fit ({precision}, {steps} steps/epoch, "
            f"training steps only): {hours:.1f} h on 1 {args.device} device, "
            f"{hours / 4:.1f} h on 4 with DDP if it scaled linearly"
        )
    return lines


def parse_child(output: str, status: int, what: str) -> dict:
    last = output.strip().splitlines()[-1] if output.strip() else ""
    if status != 0 or not last.startswith("{"):
        raise SystemExit(f"{what} failed ({status}):\n{output[-3000:]}")
    return json.loads(last)


def print_table(rows: list[Row], args: argparse.Namespace) -> None:
    print(
        f"\nMarket-size stages on {args.device}, {args.threads} thread(s), "
        f"{args.workers} loader workers\n"
    )
    print("| stage | wall (s) | throughput | peak RSS (GiB) | what was run |")
    print("|---|---:|---:|---:|---|")
    for row in rows:
        print(
            f"| {row.stage} | {row.wall_s:.1f} | {row.throughput} | {row.peak_gib:.2f} | "
            f"{row.note} |"
        )
    for line in projection(args):
        print(line)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="data", help="data.root holding market1501/")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "real_size")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of each stage")
    parser.add_argument("--workers", type=int, default=2, help="loader worker processes")
    parser.add_argument("--load-batches", type=int, default=20)
    parser.add_argument(
        "--backbones", nargs="+", default=["resnet50", "swin_base_patch4_window7_224"]
    )
    parser.add_argument("--batch", type=int, default=32, help="HR images (as many LR) a step")
    parser.add_argument("--precisions", nargs="+", default=["fp32"], choices=("fp32", "bf16"))
    parser.add_argument("--step-iterations", type=int, default=2)
    parser.add_argument("--step-warmup", type=int, default=1)
    parser.add_argument("--fit-steps", type=int, default=1, help="training steps per epoch")
    parser.add_argument("--fit-precision", default="32")
    parser.add_argument("--paper-backbone", default="resnet50")
    parser.add_argument(
        "--eval-backbone",
        default="resnet10t",
        help="small backbone for full-size test/index/search ('' to skip)",
    )
    parser.add_argument(
        "--fraction",
        type=float,
        default=0.05,
        help="share of test/index/search images embedded with the paper backbone",
    )
    parser.add_argument("--gpu-slot", action="store_true", help="the one-GPU settings")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.eval_backbone = args.eval_backbone or None
    if args.gpu_slot:
        gpu_slot(args)
    args.out.mkdir(parents=True, exist_ok=True)
    args.checkpoints, args.step_seconds, args.steps_per_epoch = {}, {}, None
    return args


def gpu_slot(args: argparse.Namespace) -> None:
    """Full batch, fp32 and bf16, more steps, the whole test and index: one GPU in < 15 min.
    Without a GPU: say so, and check the logic on the CPU with the cheapest stage."""
    import torch

    if torch.cuda.is_available():
        args.device, args.precisions = "cuda", ["fp32", "bf16"]
        args.step_iterations, args.step_warmup, args.fit_steps = 20, 5, 50
        args.fit_precision, args.fraction, args.eval_backbone = "bf16-mixed", 1.0, None
        args.workers = args.threads = min(8, os.cpu_count() or 1)
        return
    print(
        "no GPU: the GPU figures are not measured; checking the script on the CPU "
        "(data loading only)"
    )
    args.stages, args.load_batches = ["load"], 2


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.child:
        options = json.loads(args.child)
        print(json.dumps(CHILDREN[options["stage"]](options, args.device)))
        return 0
    rows: list[Row] = []
    for stage in STAGES:
        if stage not in args.stages:
            continue
        if stage in ("test", "index", "search") and not args.checkpoints:
            args.checkpoints = {
                b: args.out / f"fit_{b}" / "checkpoints" / "last.ckpt"
                for b in (args.paper_backbone, args.eval_backbone)
                if b
            }
            args.checkpoints = {b: p for b, p in args.checkpoints.items() if p.is_file()}
        runner = {
            "load": stage_load,
            "step": stage_step,
            "fit": stage_fit,
            "test": stage_test,
            "index": lambda a: stage_index(a, search=False),
            "search": lambda a: stage_index(a, search=True),
        }[stage]
        new = runner(args)
        for row in new:
            print(
                f"{row.stage}: {row.wall_s:.1f} s, {row.throughput}, {row.peak_gib:.2f} GiB; "
                f"{row.note}",
                flush=True,
            )
        rows += new
    print_table(rows, args)
    (args.out / "table.json").write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
