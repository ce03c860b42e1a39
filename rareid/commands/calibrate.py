"""``rareid calibrate``: the command line of :mod:`rareid.deploy.verify.calibrate`.

The parser imports nothing heavy (no torch, no Lightning), so ``rareid calibrate --help`` and
usage errors answer at once; the index, the model and the dataset are imported after the
arguments are read.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rareid.commands.arguments import checkpoint_problem
from rareid.commands.threads import add_threads_argument, threads_problem, use_threads
from rareid.deploy.verify.calibrate import DEFAULT_FARS, DEFAULT_MIN_TAR
from rareid.runs import OneLineArgumentParser, atomic_write

if TYPE_CHECKING:
    import numpy as np

    from rareid.deploy.gallery.index import GalleryIndex
    from rareid.deploy.verify.labels import Labels
    from rareid.models.module import RAReIDModule

#: Genuine and impostor distances per query level.
Distances = tuple[dict[int, "np.ndarray"], dict[int, "np.ndarray"]]


def build_parser() -> argparse.ArgumentParser:
    """The arguments of ``rareid calibrate`` (built without importing torch)."""
    parser = OneLineArgumentParser(
        prog="rareid calibrate",
        description="Per-level 'same person?' thresholds at fixed FARs, either on your own "
        "labelled crops (--index with --labels: the embeddings of the index, no dataset config) "
        "or on the validation split of a training config (--ckpt with --config). Writes "
        "calibration.json and calibration.png beside the index (or the checkpoint).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--index", help="index file (of `rareid index`) to store the thresholds in")
    add(
        "--labels",
        help="CSV of 'path, person[, camera]' rows (paths relative to the CSV or the gallery) "
        "or a folder with one sub-folder per person; every file must be in --index",
    )
    add(
        "--tracks-index",
        help="a tracks index (of `rareid tracks index`): calibrate pooled tracklet distances "
        "on --labels, a camera,track_id,person CSV; the thresholds are stored in it",
    )
    add("--pooling", help="with --tracks-index: the pooling the thresholds hold for")
    add("--min-frames", type=int, help="with --tracks-index: the --min-frames they hold for")
    add("--ckpt", help="trained checkpoint (default with --labels: the index's checkpoint)")
    add(
        "--onnx",
        help="with --labels: embed with this ONNX model of `rareid export` instead of a "
        "checkpoint (an index built with --backend onnx)",
    )
    add("--config", help="a training config whose validation split to calibrate on")
    add("--root", help="override data.root of --config")
    add("--out", help="JSON to write (default: calibration.json beside --index or --ckpt)")
    add("--png", help="picture of the curves (default: beside --out, .png)")
    add("--far", type=float, nargs="+", default=list(DEFAULT_FARS), help="false-accept rates")
    add(
        "--far-per-search",
        type=float,
        help="false 'same' verdicts one search may give on average over the whole gallery of "
        "--index (e.g. 0.1): also calibrates the per-pair FAR that keeps it there "
        "(this target / gallery size); `rareid search` uses that FAR unless given --far",
    )
    add(
        "--min-tar",
        type=float,
        default=DEFAULT_MIN_TAR,
        help="least true-accept rate at a FAR for its threshold to give verdicts",
    )
    add("--overwrite", action="store_true", help="replace an existing --out / --png")
    add_threads_argument(parser)
    add("--batch-size", type=int, default=64, help="images per embedding batch")
    add("--device", default="auto", help="torch device (auto, cpu, cuda, ...)")
    return parser


def _check_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse contradictory or out-of-range options before anything is loaded."""
    for far in args.far:
        if not 0 < far < 1:
            parser.error(f"--far: expected rates in (0, 1), got {far}")
    if args.batch_size < 1:
        parser.error(f"--batch-size: expected a positive integer, got {args.batch_size}")
    if not 0 <= args.min_tar < 1:
        parser.error(f"--min-tar: expected a rate in [0, 1), got {args.min_tar}")
    if args.far_per_search is not None:
        if args.far_per_search <= 0:
            parser.error(f"--far-per-search: expected a positive number, got {args.far_per_search}")
        if not args.index:
            parser.error("--far-per-search needs --index: the gallery's size sets the per-pair FAR")
    if args.labels and args.config:
        parser.error("--labels and --config both given: calibrate on one of them")
    if args.labels and not args.index:
        parser.error("--labels needs --index (the labelled images' embeddings are read from it)")
    if not args.labels and not args.config:
        parser.error("give --index with --labels (your own crops) or --ckpt with --config")
    if args.onnx and (args.config or args.ckpt):
        parser.error("--onnx calibrates with --index and --labels, without --ckpt or --config")
    if args.onnx and not Path(args.onnx).is_file():
        parser.error(f"--onnx: {args.onnx!r} does not exist; write it with `rareid export`")
    if args.config and not args.ckpt:
        parser.error("--config needs --ckpt (the checkpoint to calibrate)")
    if args.config and not Path(args.config).is_file():
        parser.error(f"--config: {args.config!r} does not exist")
    if args.ckpt and (problem := checkpoint_problem(args.ckpt)):
        parser.error(problem)
    from rareid.deploy.model.checks import device_problem

    if problem := device_problem(args.device):
        parser.error(problem)
    out = Path(args.out) if args.out else Path(args.index or args.ckpt).parent / "calibration.json"
    for flag, path in (
        ("--out", out),
        ("--png", Path(args.png) if args.png else out.with_suffix(".png")),
    ):
        if path.is_dir():
            parser.error(f"{flag}: {str(path)!r} is a folder; give a file name")
        if path.exists() and not args.overwrite:
            parser.error(
                f"{flag}: {str(path)!r} exists (an earlier calibration); pass --overwrite to "
                f"replace it or choose another {flag}"
            )


def _load_index(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[GalleryIndex | None, str, str]:
    """The index (if any), the checkpoint to calibrate and its SHA-256, each checked."""
    from rareid.deploy.gallery.index import GalleryIndex, GalleryIndexError
    from rareid.deploy.model.inference import file_sha256

    index = None
    if args.index:
        try:
            index = GalleryIndex.load(args.index)
        except (FileNotFoundError, GalleryIndexError) as error:
            parser.error(f"--index: {error}")
    if args.onnx:
        assert index is not None
        return index, "", index.checkpoint_sha256
    ckpt = args.ckpt or (index.checkpoint_path if index is not None else None)
    if index is not None and args.ckpt is None and not index.checkpoint_path:
        parser.error(
            f"--onnx: {args.index!r} was built with an ONNX model (no checkpoint recorded); "
            "pass --onnx MODEL.onnx (or --ckpt CHECKPOINT)"
        )
    if args.ckpt is None and (not ckpt or not Path(ckpt).is_file()):
        parser.error(f"--ckpt: the index's checkpoint {ckpt!r} is not there; pass --ckpt PATH")
    if problem := checkpoint_problem(ckpt):
        parser.error(problem)
    digest = file_sha256(ckpt)
    if index is not None and index.checkpoint_sha256 != digest:
        parser.error(
            f"--index: {args.index!r} was built with another checkpoint than {ckpt!r}; "
            "thresholds of one model do not apply to another"
        )
    return index, ckpt, digest


def _label_distances(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    index: GalleryIndex,
    model: RAReIDModule,
    ckpt: str,
) -> tuple[Distances, Labels]:
    """Distances between the labelled crops of the index; people the model was trained on and
    a single identity are refused."""
    from rareid.deploy.model.backend_torch import TorchBackend
    from rareid.deploy.model.inference import read_checkpoint
    from rareid.deploy.verify.labels import (
        TRAINING_RECORD_KEY,
        label_distances,
        read_labels,
        trained_identities,
    )

    labels = read_labels(args.labels, index)
    record = read_checkpoint(ckpt).get(TRAINING_RECORD_KEY)
    seen = trained_identities(labels, index, record)
    if seen:
        parser.error(
            f"--labels: {len(seen)} of the {labels.identities} labelled identities "
            f"({', '.join(seen[:5])}) were in the training split of {ckpt!r}: calibrate "
            "on people the model never saw"
        )
    if labels.identities < 2:
        parser.error(
            f"--labels: {labels.identities} identity in {args.labels!r}: impostor "
            "pairs need at least two people"
        )
    return label_distances(index, labels, TorchBackend(model), args.batch_size), labels


def _onnx_label_distances(
    parser: argparse.ArgumentParser, args: argparse.Namespace, index: GalleryIndex
) -> tuple[Distances, str, Labels]:
    """The labelled crops' distances embedded by the ONNX model of an ONNX-built index (the
    file does not record the training identities: said, not checked)."""
    import sys

    from rareid.deploy.model.backend_onnx import OnnxBackend
    from rareid.deploy.verify.labels import label_distances, read_labels

    try:
        backend = OnnxBackend(args.onnx, expected_sha256=index.checkpoint_sha256 or None)
        index.check_model(backend)
        labels = read_labels(args.labels, index)
        if labels.identities < 2:
            parser.error(
                f"--labels: {labels.identities} identity in {args.labels!r}: impostor "
                "pairs need at least two people"
            )
        print(
            "note: an ONNX model does not record its training identities: make sure the "
            "labelled people were not in its training split",
            file=sys.stderr,
        )
        distances = label_distances(index, labels, backend, args.batch_size)
    except (ImportError, ValueError, OSError) as error:
        parser.error(str(error))
    return distances, f"labels {args.labels}", labels


def _distances(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    index: GalleryIndex | None,
    ckpt: str,
) -> tuple[RAReIDModule | None, Distances, str, Labels | None]:
    """The model, the genuine and impostor distances per level, the split's name and the
    labels (with --labels)."""
    from rareid.deploy.model.checks import resolve_device
    from rareid.deploy.model.inference import load_model, read_checkpoint
    from rareid.deploy.verify.calibrate import collect_distances, datamodule_from_config

    labels = None
    if args.onnx:
        assert index is not None
        return None, *_onnx_label_distances(parser, args, index)
    try:
        model, preprocess = load_model(ckpt, resolve_device(args.device))
        if args.labels:
            assert index is not None
            distances, labels = _label_distances(parser, args, index, model, ckpt)
            split = f"labels {args.labels}"
        else:
            hparams = read_checkpoint(ckpt)["hyper_parameters"]
            datamodule = datamodule_from_config(args.config, hparams, preprocess, args.root)
            distances = collect_distances(model, datamodule, "val", args.batch_size)
            split = "val"
    except (ValueError, OSError) as error:
        parser.error(str(error))
    if not any(values.size for values in distances[0].values()):
        parser.error(
            f"{'--labels' if args.labels else '--config'}: no genuine pair to calibrate on"
        )
    return model, distances, split, labels


def _earlier_files(*paths: Path) -> dict[Path, bytes | None]:
    """The bytes of each output that exists already (``None``: absent), to put back when the
    calibration cannot be stored whole."""
    return {path: path.read_bytes() if path.is_file() else None for path in paths}


def _put_back(earlier: dict[Path, bytes | None]) -> None:
    """Outputs as they were before this calibration (absent ones removed)."""
    for path, data in earlier.items():
        with contextlib.suppress(OSError):
            if data is None:
                path.unlink(missing_ok=True)
            else:
                atomic_write(path, lambda handle, data=data: handle.write(data))


def _report(
    args: argparse.Namespace,
    calibration: dict[str, Any],
    out: Path,
    png: Path,
    num_levels: int,
) -> None:
    """One line per level (AUC, thresholds, TAR, false alarms per search, or why none) and
    what was written where."""
    from rareid.deploy.verify.calibrate import level_summary, stored_thresholds

    stored = []
    for level in sorted(calibration["levels"], key=int):
        if calibration["levels"][level]["thresholds"]:
            stored.append(level)
        print(level_summary(calibration, level))
    target = calibration.get("far_per_search")
    if target is not None:
        print(
            f"at most {target['target']:g} false 'same' per search of {calibration['gallery_size']} "
            f"images: per-pair FAR {target['pair_far']:.3g} (rareid search uses it unless --far)"
        )
    missing = [str(k) for k in range(1, num_levels + 1) if str(k) not in stored]
    print(
        f"wrote {out} and {png}"
        + (
            f"; {stored_thresholds(calibration)} thresholds stored in {args.index}"
            if args.index
            else ""
        )
        + f" (levels {', '.join(stored) or 'none'})"
        + (
            f"; levels {', '.join(missing)} have none: their verdicts stay 'uncalibrated'"
            if missing
            else ""
        )
    )


def _any_measured(calibration: dict[str, Any]) -> bool:
    """Whether some level had enough pairs to be measured (a threshold refused for its AUC or
    TAR is a result to report, not a shortage of pairs)."""
    return any(entry["tar"] for entry in calibration["levels"].values())


def main(argv: Sequence[str]) -> int:
    """``rareid calibrate``: per-level thresholds from labelled crops or the validation split,
    into an index and a JSON beside it, plus a PNG of the curves."""
    from rareid.deploy.verify.calibrate import calibrate_levels, stored_thresholds

    parser = build_parser()
    args = parser.parse_args(list(argv))
    if args.tracks_index or args.pooling or args.min_frames is not None:
        from rareid.commands.calibrate_tracks import calibrate_tracks_main

        return calibrate_tracks_main(parser, args)
    _check_options(parser, args)
    if problem := threads_problem(args.threads):
        parser.error(problem)
    index, ckpt, digest = _load_index(parser, args)
    use_threads(args.threads, len(index) if index is not None else 0)
    out = Path(args.out) if args.out else Path(args.index or ckpt).parent / "calibration.json"
    png_path = Path(args.png) if args.png else out.with_suffix(".png")
    model, (genuine, impostor), split, labels = _distances(parser, args, index, ckpt)
    calibration = calibrate_levels(
        genuine,
        impostor,
        args.far,
        min_tar=args.min_tar,
        gallery_size=len(index) if index is not None else None,
        far_per_search=args.far_per_search,
    )
    if stored_thresholds(calibration) == 0 and not _any_measured(calibration):
        if labels is not None:
            from rareid.deploy.verify.labels import describe_shortage

            parser.error(describe_shortage(labels, impostor, args.far))
        parser.error(
            "--config: the validation split gives too few impostor pairs for FAR "
            f"{max(args.far):g} at every level: hold out more identities or ask a larger --far"
        )
    calibration.update(
        metric=model.hparams.distance if model is not None else index.metric,
        split=split,
        checkpoint_sha256=digest,
        rates=[float(r) for r in (model.rates if model is not None else index.rates)],
    )
    text = json.dumps(calibration, indent=1).encode()
    earlier = _earlier_files(out, png_path)
    try:
        atomic_write(out, lambda handle: handle.write(text))
        from rareid.commands.calibrate_picture import plot_calibration

        png = plot_calibration(genuine, impostor, calibration, png_path)
    except OSError as error:
        _put_back(earlier)
        parser.error(f"--out: cannot write {str(out)!r} ({error.strerror or error})")
    if index is not None:
        index.calibration = calibration
        try:
            index.save(args.index)
        except OSError as error:  # no calibration.json may claim thresholds the index lacks
            _put_back(earlier)
            parser.error(
                f"--index: cannot store the thresholds in {args.index!r} "
                f"({error.strerror or error}); nothing was written: calibrate a copy of the "
                "index in a folder you can write to"
            )
    _report(args, calibration, out, png, len(calibration["rates"]))
    return 0
