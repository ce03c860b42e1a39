"""Tracklet matching against single-frame matching on the built-in synthetic videos.

    .venv/bin/python benchmarks/tracklets.py --ckpt runs/quickstart/checkpoints/last.ckpt

Two measurements, both on identities the quickstart model never trained on (the test
identities of ``rareid synth --identities 100 --seed 0``):

* ``mlr-video``: HR tracklets of 12 renders; queries in camera 1 degraded frame by frame by a
  schedule (constant, random per frame, approaching ramp 4 -> 1), gallery in cameras 2 and 3
  at HR; every pooling and single-frame matching, 10 trials, mean and std;
* ``scenes``: the tracklets of ``rareid tracks synth --walkers 50`` (people walking through three camera
  scenes, crops cut at their native size from the ground-truth boxes), queries in cam1,
  gallery in cam2 and cam3 (plus passers-by); every tracklet's resolution changes on both sides.

Prints a Markdown table and writes ``tracklets.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import torch

from rareid.data.synthetic import SyntheticWorld
from rareid.data.synthetic.video import hr_tracklet, write_synthetic_video
from rareid.deploy import load_model
from rareid.deploy.model.inference import read_checkpoint
from rareid.evaluation.rank import evaluate_rank
from rareid.tracks.index import TrackIndex
from rareid.tracks.link import link_tracks
from rareid.tracks.match import DEFAULT_MIN_FRAMES, track_distances
from rareid.tracks.pooling import POOLINGS, pool_track
from rareid.tracks.protocol import (
    SCHEDULES,
    SINGLE_FRAME,
    VideoSet,
    evaluate_mlr_video,
    markdown_table,
    summarize,
)
from rareid.tracks.readers import read_crop_tracks


def hr_video_set(identities: int, seed: int, length: int) -> VideoSet:
    """Test identities of the ``rareid synth`` world: camera 0 queries, cameras 1-2 gallery."""
    train = identities // 2
    world = SyntheticWorld(identities=identities, seed=seed, cameras=4, train_identities=train)
    pids = list(range(train + 1, identities + 1))
    queries = [hr_tracklet(world, pid, 0, length, 1000) for pid in pids]
    gallery = [hr_tracklet(world, pid, camera, length, 2000) for camera in (1, 2) for pid in pids]
    return VideoSet(
        queries, pids, [0] * len(pids), gallery, pids * 2, [1] * len(pids) + [2] * len(pids)
    )


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--out", default="runs/tracklets")
    parser.add_argument("--identities", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--length", type=int, default=12, help="frames per HR tracklet")
    parser.add_argument("--min-frames", type=int, default=DEFAULT_MIN_FRAMES)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model, preprocess = load_model(args.ckpt)
    policy = str(
        (read_checkpoint(args.ckpt).get("datamodule_hyper_parameters") or {}).get("level_policy")
        or "nearest"
    )
    with torch.inference_mode():
        data = hr_video_set(args.identities, args.seed, args.length)
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
            scenes(
                model, preprocess, policy, out / "video", args.seed, args.trials, args.min_frames
            )
        )
    links = results.pop("links")
    summary = summarize(results)
    (out / "tracklets.json").write_text(
        json.dumps(
            {"args": vars(args), "per_trial": results, "summary": summary, "links": links},
            indent=1,
        )
    )
    for line in markdown_table(summary, (*POOLINGS, SINGLE_FRAME)):
        print(line)


if __name__ == "__main__":
    main()
