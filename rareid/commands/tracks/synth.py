"""``rareid tracks synth``: render the built-in synthetic camera videos (frames, MOT ground
truth, crop folders), the video benchmark that needs no download."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from rareid.runs import OneLineArgumentParser


def build_parser() -> argparse.ArgumentParser:
    """The arguments of ``rareid tracks synth``."""
    parser = OneLineArgumentParser(
        prog="rareid tracks synth",
        description="Render people walking through several cameras' scenes: frames/, gt/ "
        "(MOTChallenge), tracks/<camera>/<track_id>/ crops and identities.csv.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--out", required=True, help="output folder, e.g. data/synthetic_video")
    add("--identities", type=int, default=100, help="identities of the world (as `rareid synth`)")
    add("--walkers", type=int, default=20, help="test identities that cross every camera")
    add("--cameras", type=int, default=3, help="number of cameras")
    add("--passers-by", type=int, default=3, help="strangers per camera")
    add("--seed", type=int, default=0, help="seed: same seed, same bytes (as `rareid synth`)")
    return parser


def main(argv: Sequence[str]) -> int:
    """``rareid tracks synth``: write the synthetic videos."""
    parser = build_parser()
    args = parser.parse_args(list(argv))
    from rareid.data.synthetic.video import write_synthetic_video

    if args.passers_by < 0:
        parser.error(f"--passers-by: expected a count >= 0, got {args.passers_by}")
    try:
        summary = write_synthetic_video(
            args.out, args.identities, args.walkers, args.cameras, args.passers_by, args.seed
        )
    except ValueError as error:
        parser.error(f"--{str(error).replace('_', '-')}")
    print(summary)
    return 0
