"""``rareid tracks <subcommand>``: one module per subcommand, each with ``build_parser()`` and
``main(argv) -> int``; this module only dispatches (nothing heavy is imported here)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

#: Subcommand -> (module, one-line help).
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "index": ("rareid.tracks.index_command", "Embed tracklets (crop folders or video + MOT)."),
    "search": ("rareid.tracks.search_command", "Rank indexed tracklets for query tracklets."),
    "link": ("rareid.tracks.link_command", "One global identity per person across cameras."),
    "evaluate": ("rareid.tracks.evaluate_command", "The mlr-video protocol on a video dataset."),
    "synth": ("rareid.tracks.synth_command", "Render the built-in synthetic camera videos."),
}


def usage() -> str:
    lines = ["usage: rareid tracks {" + ",".join(SUBCOMMANDS) + "} ...", ""]
    lines += [f"  {name:<7} {summary}" for name, (_, summary) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    """Re-identify people across cameras from tracklets (index, search, link, synth)."""
    arguments = list(argv)
    if not arguments or arguments[0] in ("-h", "--help"):
        print(usage())
        return 0 if arguments else 2
    name = arguments[0]
    if name not in SUBCOMMANDS:
        print(
            f"rareid tracks: error: unknown subcommand {name!r}; choose one of "
            f"{', '.join(SUBCOMMANDS)}",
            file=sys.stderr,
        )
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    return int(module.main(arguments[1:]))
