"""Results over several random splits, as cross-resolution papers report them.

Each ``rareid test`` run writes ``results.json`` for one split: per metric the mean over
the split's trials and ``<metric>_std``, the standard deviation over those trials. Two
sources of spread are kept apart here:

* **over splits** -- the standard deviation of the per-split means: how much the figure
  depends on which identities were drawn for training and test;
* **over trials** -- the trial standard deviation pooled over splits (root mean square of
  the per-split trial deviations): how much it depends on the random LR rates and
  single-shot gallery draws of one split.

Both are population standard deviations (ddof = 0), like the trial deviation of one split.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rareid.runs import OneLineArgumentParser, atomic_write

_METRICS = (("rank1", "rank-1"), ("rank5", "rank-5"), ("rank10", "rank-10"), ("mAP", "mAP"))
_LEVEL_KEY = re.compile(r"^level(\d+)/")
_METRIC_NAME = re.compile(r"rank\d+|mAP")  # other fields (counts, paths) are not aggregated


@dataclass(frozen=True)
class Spread:
    """One metric over splits: mean, std over splits, pooled std over trials, per-split means."""

    mean: float
    std_over_splits: float
    std_over_trials: float | None
    per_split: tuple[float, ...]


def _population_std(values: Sequence[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def aggregate(results: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Spread], list[str]]:
    """Per metric key present in every split: its :class:`Spread`; and the keys left out.

    Keys are those of ``results.json`` (``rank1``, ``level2/mAP``, ``hr/rank1`` ...);
    ``*_std`` entries are read as the trial deviations, not aggregated themselves; fields
    that are not rank-k or mAP (counts, the checkpoint's path) are not aggregated. A key
    missing from some split, or null (no scored query) in one, is left out and named.
    """
    if not results:
        raise ValueError("aggregate: no results to aggregate")

    def metric_keys(result: Mapping[str, Any]) -> set[str]:
        return {key for key in result if _METRIC_NAME.fullmatch(key.rsplit("/", 1)[-1])}

    all_keys = set().union(*(metric_keys(r) for r in results))
    spreads: dict[str, Spread] = {}
    left_out: list[str] = []
    for key in sorted(all_keys):
        means = [r.get(key) for r in results]
        if any(value is None for value in means):
            left_out.append(key)
            continue
        trial_stds = [r.get(f"{key}_std") for r in results]
        pooled = (
            None
            if any(std is None for std in trial_stds)
            else math.sqrt(sum(float(std) ** 2 for std in trial_stds) / len(trial_stds))
        )
        values = [float(value) for value in means]
        spreads[key] = Spread(
            mean=sum(values) / len(values),
            std_over_splits=_population_std(values),
            std_over_trials=pooled,
            per_split=tuple(values),
        )
    return spreads, left_out


def _row_groups(keys: Sequence[str]) -> list[tuple[str, str]]:
    levels = sorted({int(m.group(1)) for k in keys if (m := _LEVEL_KEY.match(k))}, reverse=True)
    groups = [("all levels", "")]
    groups += [(f"level {level}", f"level{level}/") for level in levels]
    if any(k.startswith("hr/") for k in keys):
        groups.append(("HR query (r=1)", "hr/"))
    return groups


def format_markdown(spreads: Mapping[str, Spread], splits: int) -> str:
    """One Markdown table in percent: mean, std over splits and std over trials per metric."""

    def percent(value: float | None) -> str:
        return "–" if value is None else f"{100 * value:.1f}"

    lines = [
        f"Mean over {splits} split(s); ± splits: std of the per-split means; "
        "± trials: trial std pooled over splits (population stds, %).",
        "",
        "| queries | metric | mean | ± splits | ± trials |",
        "|---|---|---:|---:|---:|",
    ]
    for name, prefix in _row_groups(list(spreads)):
        for key, title in _METRICS:
            spread = spreads.get(f"{prefix}{key}")
            if spread is None:
                continue
            lines.append(
                f"| {name} | {title} | {percent(spread.mean)} | "
                f"{percent(spread.std_over_splits)} | {percent(spread.std_over_trials)} |"
            )
    return "\n".join(lines)


def to_json(spreads: Mapping[str, Spread], files: Sequence[str], left_out: Sequence[str]) -> str:
    data = {
        "splits": len(files),
        "files": list(files),
        "left_out": list(left_out),
        "metrics": {
            key: {
                "mean": spread.mean,
                "std_over_splits": spread.std_over_splits,
                "std_over_trials": spread.std_over_trials,
                "per_split": list(spread.per_split),
            }
            for key, spread in spreads.items()
        },
    }
    return json.dumps(data, indent=2, sort_keys=True)


def _read(path: Path, parser: argparse.ArgumentParser) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as error:
        parser.error(f"{path}: cannot read it ({error.strerror or error}); give results.json files")
    except json.JSONDecodeError as error:
        parser.error(f"{path}: not JSON ({error.msg} at line {error.lineno})")
    if not isinstance(data, dict) or "rank1" not in data:
        parser.error(f"{path}: not a rareid results.json (no rank1); run rareid test first")
    return data


def build_parser(prog: str = "rareid aggregate") -> argparse.ArgumentParser:
    """The options of ``rareid aggregate``."""
    parser = OneLineArgumentParser(
        prog=prog,
        description="Aggregate the results.json of several rareid test runs (one per split): "
        "mean, std over splits and std over trials, kept apart.",
    )
    parser.add_argument("results", nargs="+", type=Path, help="results.json of each split")
    parser.add_argument(
        "--out", type=Path, help="folder for aggregate.md and aggregate.json (default: print only)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an earlier aggregate.md/json in --out"
    )
    return parser


def main(argv: Sequence[str], prog: str = "rareid aggregate") -> int:
    """Mean and spread over splits and over trials of several rareid test results."""
    parser = build_parser(prog)
    args = parser.parse_args(list(argv))
    files = [str(path) for path in args.results]
    if args.out is not None:
        if args.out.exists() and not args.out.is_dir():
            parser.error(f"--out {args.out}: is a file; give a folder")
        earlier = [
            name for name in ("aggregate.md", "aggregate.json") if (args.out / name).exists()
        ]
        if earlier and not args.overwrite:
            parser.error(
                f"--out {args.out}: already holds {' and '.join(earlier)} (earlier results); "
                "pass --overwrite to replace them or choose another folder"
            )
    if len(set(files)) != len(files):
        parser.error("the same results file is given twice; each split counts once")
    spreads, left_out = aggregate([_read(path, parser) for path in args.results])
    table = format_markdown(spreads, len(files))
    print(table)
    if left_out:
        print(f"left out ({len(left_out)}, missing or null in some split): {', '.join(left_out)}")
    if args.out is not None:
        try:
            for name, text in (
                ("aggregate.md", table + "\n"),
                ("aggregate.json", to_json(spreads, files, left_out) + "\n"),
            ):
                data = text.encode()
                atomic_write(args.out / name, lambda handle, data=data: handle.write(data))
        except OSError as error:
            parser.error(f"--out {args.out}: cannot write there ({error.strerror or error})")
        print(f"aggregate: {args.out / 'aggregate.md'}, {args.out / 'aggregate.json'}")
    return 0
