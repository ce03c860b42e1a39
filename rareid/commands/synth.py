"""``rareid synth``: write the built-in synthetic dataset in the Market-1501 layout.

A folder that already holds the same dataset (same parameters) is left as it is.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from rareid.commands.arguments import cannot_write
from rareid.runs import OneLineArgumentParser


def build_parser() -> argparse.ArgumentParser:
    """The options of ``rareid synth``."""
    parser = OneLineArgumentParser(
        prog="rareid synth",
        description="Write the procedural synthetic pedestrian dataset (Market-1501 layout).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", required=True, help="output folder, e.g. data/synthetic")
    parser.add_argument(
        "--identities", type=int, default=None, help="number of identities (default 100)"
    )
    parser.add_argument("--cameras", type=int, default=None, help="number of cameras (default 4)")
    parser.add_argument(
        "--like",
        default=None,
        metavar="BENCHMARK",
        help="the exact identity, camera and image counts of a published benchmark, in its "
        "layout (instead of --identities and --cameras): market1501",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed: same seed, same bytes")
    parser.add_argument("--force", action="store_true", help="rewrite even if up to date")
    return parser


def main(argv: Sequence[str]) -> int:
    """Write the dataset, or leave an up-to-date folder as it is (``--force`` rewrites it)."""
    parser = build_parser()
    args = parser.parse_args(list(argv))
    if args.like and (args.identities is not None or args.cameras is not None):
        parser.error(
            f"--like {args.like} fixes the identities and cameras: drop --identities/--cameras"
        )
    from rareid.data.synthetic import ensure_synthetic_dataset, write_synthetic_dataset

    sizes = {
        "identities": 100 if args.identities is None else args.identities,
        "cameras": 4 if args.cameras is None else args.cameras,
    }
    write = write_synthetic_dataset if args.force else ensure_synthetic_dataset
    try:
        summary = write(args.out, **sizes, seed=args.seed, like=args.like)
    except FileExistsError as error:
        if error.errno is not None:  # a file where the folder should be
            parser.error(cannot_write("--out", args.out, error))
        parser.error(str(error))  # a folder with other content: the writer says what to do
    except ValueError as error:
        parser.error(str(error))
    except OSError as error:
        parser.error(cannot_write("--out", args.out, error))
    print(summary)
    return 0
