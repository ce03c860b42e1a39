"""``rareid tracks <subcommand>``: one module per subcommand (``index``, ``search``, ``link``,
``evaluate``, ``synth``), each with ``build_parser()`` and ``main(argv) -> int``; this module
only dispatches (nothing heavy is imported here)."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from rareid.runs import OneLineArgumentParser

#: Subcommand -> (module, one-line help).
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "index": ("rareid.commands.tracks.index", "Embed tracklets (crop folders or video + MOT)."),
    "search": ("rareid.commands.tracks.search", "Rank indexed tracklets for query tracklets."),
    "link": ("rareid.commands.tracks.link", "One global identity per person across cameras."),
    "evaluate": ("rareid.commands.tracks.evaluate", "The mlr-video protocol on a video dataset."),
    "synth": ("rareid.commands.tracks.synth", "Render the built-in synthetic camera videos."),
}


def build_parser() -> argparse.ArgumentParser:
    """The subcommand choice of ``rareid tracks`` (each subcommand parses its own options)."""
    parser = OneLineArgumentParser(
        prog="rareid tracks",
        description=usage(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("subcommand", choices=list(SUBCOMMANDS), help="what to do")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="the subcommand's options")
    return parser


def usage() -> str:
    """The subcommands and their one-line help."""
    lines = ["subcommands (rareid tracks NAME --help for their options):"]
    lines += [f"  {name:<7} {summary}" for name, (_, summary) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    """Re-identify people across cameras from tracklets (index, search, link, evaluate, synth)."""
    args = build_parser().parse_args(list(argv))
    module = importlib.import_module(SUBCOMMANDS[args.subcommand][0])
    return int(module.main(args.options))
