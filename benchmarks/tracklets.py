"""Tracklet matching against single-frame matching on the built-in synthetic videos, per
model variant over several checkpoints (seeds).

    .venv/bin/python benchmarks/tracklets.py \
        --variant full runs/benchmark/rareid-full-fast/seed{0,1,2}/checkpoints/last.ckpt \
        --variant ide-plus-verif runs/benchmark/ide-plus-verif-fast/seed{0,1,2}/checkpoints/last.ckpt

Two measurements, both on identities the models never trained on (the test identities of
``rareid synth --identities 100 --seed 0``):

* ``mlr-video``: HR tracklets of 12 renders; queries in camera 1 degraded frame by frame by a
  schedule (constant, random per frame, approaching ramp 4 -> 1), gallery in cameras 2 and 3
  at HR; every pooling and single-frame matching, 10 trials;
* ``scenes``: the tracklets of ``rareid tracks synth --walkers 50`` (people walking through
  three camera scenes, crops cut at their native size from the ground-truth boxes), queries in
  cam1, gallery in cam2 and cam3 (plus passers-by); every tracklet's resolution changes on
  both sides.

Each checkpoint's scores (per trial) are written to ``--out/<variant>/<n>/tracklets.json`` and
reused by a later run with the same options and checkpoint (by its SHA-256); the table gives the mean
± std over a variant's checkpoints (the std of the per-checkpoint means over trials, ddof 1).
Prints a Markdown table, writes ``tracklets.json`` and the chart ``tracklets.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import torch

from rareid.data.synthetic.video import write_synthetic_video
from rareid.deploy import load_model
from rareid.deploy.model.inference import file_sha256, read_checkpoint
from rareid.evaluation.rank import evaluate_rank
from rareid.tracks.index import TrackIndex
from rareid.tracks.link import link_tracks
from rareid.tracks.match import DEFAULT_MIN_FRAMES, track_distances
from rareid.tracks.pooling import POOLINGS, pool_track
from rareid.tracks.protocol import (
    SCHEDULES,
    SINGLE_FRAME,
    evaluate_mlr_video,
    synthetic_video_set,
)
from rareid.tracks.readers import read_crop_tracks


def scenes(
    model, preprocess, policy: str, root: Path, seed: int, trials: int, min_frames: int
) -> dict:
    """Rank-1 and mAP on the rendered camera scenes, per pooling and single-frame."""
    if not (root / "identities.csv").is_file():
        print(write_synthetic_video(root, identities=100, walkers=50, cameras=3, seed=seed))
    with open(root / "identities.csv") as stream:
        pid_of = {
            (row["camera"], row["track_id"]): int(row["pid"]) for row in csv.DictReader(stream)
        }
    tracks, _ = read_crop_tracks(root / "tracks")
    index = TrackIndex.empty(model, policy)
    index.add_tracks(model, preprocess, tracks)
    keys = index.keys()
    query = [track for track, key in enumerate(keys) if key[0] == "cam1" and pid_of[key] > 0]
    gallery = [track for track, key in enumerate(keys) if key[0] != "cam1"]
    q_pids = [pid_of[keys[track]] for track in query]
    g_pids = [pid_of[keys[track]] for track in gallery]
    q_cams, g_cams = [0] * len(query), [1] * len(gallery)
    result: dict = {}
    for pooling in POOLINGS:
        pooled = index.pooled(pooling)
        pairs = track_distances(
            [pooled[track] for track in query],
            [pooled[track] for track in gallery],
            index.bounds,
            min_frames,
            index.metric,
        )
        cmc, mean_ap = evaluate_rank(pairs.distances, q_pids, g_pids, q_cams, g_cams)
        result[pooling] = {"rank1": [float(cmc[0])], "mAP": [float(mean_ap)]}
    scores: dict = {"rank1": [], "mAP": []}
    for trial in range(trials):
        rng = np.random.default_rng([seed, trial, 99])

        def one(track: int, rng: np.random.Generator = rng) -> object:
            rows = index.frame_rows(track)
            pick = rows[int(rng.integers(0, rows.size))]
            return pool_track(
                index.embeddings[[pick]],
                index.levels[[pick]],
                index.rates[[pick]],
                index.bounds,
                index.known_rates,
                "average",
            )

        single_q = [one(track) for track in query]
        single_g = [one(track) for track in gallery]
        pairs = track_distances(single_q, single_g, index.bounds, 1, index.metric)
        cmc, mean_ap = evaluate_rank(pairs.distances, q_pids, g_pids, q_cams, g_cams)
        scores["rank1"].append(float(cmc[0]))
        scores["mAP"].append(float(mean_ap))
    result[SINGLE_FRAME] = scores
    levels = np.bincount(index.levels, minlength=index.num_levels + 1)[1:].tolist()
    print(
        f"scenes: {len(query)} query and {len(gallery)} gallery tracklets, frame levels 1..4: {levels}"
    )
    link_scores = score_links(index, [pid_of[key] for key in keys], min_frames)
    print("linking the scene tracklets (level-aware, no threshold): " + json.dumps(link_scores))
    return {"scenes": result, "links": link_scores}


def score_links(index: TrackIndex, pids: list[int], min_frames: int) -> dict:
    """Pairwise precision and recall of ``rareid tracks link``'s global identities against the
    truth (passers-by, pid 0, are each their own person)."""
    pooled = index.pooled("level-aware")
    pairs = track_distances(pooled, pooled, index.bounds, min_frames, index.metric)
    spans = [index.span(track) for track in range(len(index))]
    found, refused = link_tracks(pairs, index.cameras, spans)
    truth = [pid if pid > 0 else -(position + 1) for position, pid in enumerate(pids)]
    same_found = same_true = both = 0
    for first in range(len(truth)):
        for second in range(first + 1, len(truth)):
            linked, true = found[first] == found[second], truth[first] == truth[second]
            same_found += linked
            same_true += true
            both += linked and true
    return {
        "tracklets": len(truth),
        "true_identities": len(set(truth)),
        "found_identities": len(set(found)),
        "pair_precision": round(both / max(1, same_found), 4),
        "pair_recall": round(both / max(1, same_true), 4),
        "links_refused": refused,
    }


def one_checkpoint(ckpt: str, args: argparse.Namespace, scenes_root: Path) -> dict:
    """Scores (lists over trials) and link scores of one checkpoint."""
    model, preprocess = load_model(ckpt)
    policy = str(
        (read_checkpoint(ckpt).get("datamodule_hyper_parameters") or {}).get("level_policy")
        or "nearest"
    )
    with torch.inference_mode():
        data = synthetic_video_set(args.identities, args.seed, args.length)
        results = evaluate_mlr_video(
            model,
            preprocess,
            data,
            SCHEDULES,
            POOLINGS,
            args.trials,
            args.seed,
            args.min_frames,
            policy,
        )
        results.update(
            scenes(model, preprocess, policy, scenes_root, args.seed, args.trials, args.min_frames)
        )
    return results


def cached_run(ckpt: str, folder: Path, args: argparse.Namespace, scenes_root: Path) -> dict:
    """:func:`one_checkpoint`, or what an earlier run with the same options wrote."""
    options = {
        "ckpt": str(Path(ckpt).resolve()),
        "ckpt_sha256": file_sha256(ckpt),
        **{name: getattr(args, name) for name in CACHE_KEYS},
    }
    target = folder / "tracklets.json"
    if target.is_file():
        earlier = json.loads(target.read_text())
        if earlier.get("options") == options:
            print(f"{ckpt}: reusing {target}")
            return earlier
    torch.manual_seed(args.seed)
    results = one_checkpoint(ckpt, args, scenes_root)
    links = results.pop("links")
    document = {"options": options, "per_trial": results, "links": links}
    folder.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(document, indent=1))
    return document


#: Options that change a checkpoint's scores (the cache key, with the checkpoint).
CACHE_KEYS = ("identities", "seed", "trials", "length", "min_frames")
COLUMNS = (*SCHEDULES, "scenes")
METHODS = (*POOLINGS, SINGLE_FRAME)


def across_seeds(runs: list[dict]) -> dict:
    """``{column: {method: {score: (mean, std)}}}`` over checkpoints of per-checkpoint means
    (percent; std with ddof 1, 0 for one checkpoint)."""
    table: dict = {}
    for column in COLUMNS:
        for method in METHODS:
            for score in ("rank1", "mAP"):
                means = [
                    100 * float(np.mean(run["per_trial"][column][method][score])) for run in runs
                ]
                spread = float(np.std(means, ddof=1)) if len(means) > 1 else 0.0
                table.setdefault(column, {}).setdefault(method, {})[score] = (
                    float(np.mean(means)),
                    spread,
                )
    return table


def table_lines(tables: dict[str, dict]) -> list[str]:
    """Markdown: one row per variant and method, rank-1 and mAP (mean ± std) per column."""
    lines = [
        "| variant | method | " + " | ".join(f"{c} rank-1 | {c} mAP" for c in COLUMNS) + " |",
        "|---|---|" + "---:|" * (2 * len(COLUMNS)),
    ]
    for variant, table in tables.items():
        for method in METHODS:
            cells = [
                f"{table[column][method][score][0]:.1f} ± {table[column][method][score][1]:.1f}"
                for column in COLUMNS
                for score in ("rank1", "mAP")
            ]
            lines.append(f"| {variant} | {method} | " + " | ".join(cells) + " |")
    return lines


def chart(tables: dict[str, dict], path: Path) -> None:
    """Rank-1 and mAP per column: a bar per variant and method, std over checkpoints."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    bars = [(variant, method) for variant in tables for method in METHODS]
    width = 0.8 / len(bars)
    colors = plt.get_cmap("tab20").colors
    for axis, score in zip(axes, ("rank1", "mAP"), strict=True):
        for position, (variant, method) in enumerate(bars):
            values = [tables[variant][column][method][score] for column in COLUMNS]
            axis.bar(
                np.arange(len(COLUMNS)) + (position - len(bars) / 2 + 0.5) * width,
                [mean for mean, _ in values],
                width,
                yerr=[std for _, std in values],
                color=colors[position % len(colors)],
                label=f"{variant}, {method}",
                capsize=2,
            )
        axis.set_xticks(np.arange(len(COLUMNS)), COLUMNS)
        axis.set_title("rank-1 (%)" if score == "rank1" else "mAP (%)")
        axis.grid(axis="y", alpha=0.3)
    axes[1].legend(fontsize=7, ncol=2, loc="lower left")
    figure.suptitle("Tracklets on the synthetic videos: mean ± std over checkpoint seeds")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--variant",
        nargs="+",
        action="append",
        required=True,
        metavar=("NAME", "CKPT"),
        help="a variant's name and its checkpoints (one per seed); repeat per variant",
    )
    parser.add_argument("--out", default="runs/tracklets")
    parser.add_argument("--chart", help="chart file (default: --out/tracklets.png)")
    parser.add_argument("--identities", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--length", type=int, default=12, help="frames per HR tracklet")
    parser.add_argument("--min-frames", type=int, default=DEFAULT_MIN_FRAMES)
    args = parser.parse_args()
    for entry in args.variant:
        if len(entry) < 2:
            parser.error(f"--variant {entry[0]}: give the variant's checkpoints after its name")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tables, links = {}, {}
    for name, *checkpoints in args.variant:
        runs = [
            cached_run(ckpt, out / name / str(number), args, out / "video")
            for number, ckpt in enumerate(checkpoints)
        ]
        tables[name] = across_seeds(runs)
        links[name] = {
            key: float(np.mean([run["links"][key] for run in runs]))
            for key in ("found_identities", "pair_precision", "pair_recall", "links_refused")
        }
        print(f"{name}: linking, mean over {len(runs)} checkpoints: {json.dumps(links[name])}")
    (out / "tracklets.json").write_text(
        json.dumps({"args": vars(args), "summary": tables, "links": links}, indent=1)
    )
    chart(tables, Path(args.chart) if args.chart else out / "tracklets.png")
    for line in table_lines(tables):
        print(line)


if __name__ == "__main__":
    main()
