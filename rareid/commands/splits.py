"""``rareid splits --config CONF.yaml --out FILE.json``: build the datamodule of a config's
``data`` section and write its frozen MLR split (:mod:`rareid.data.splitfile`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rareid.runs import OneLineArgumentParser


def build_parser() -> argparse.ArgumentParser:
    """The options of ``rareid splits``."""
    parser = OneLineArgumentParser(
        prog="rareid splits",
        description="Write the exact MLR evaluation set of a config's data section to a file.",
    )
    parser.add_argument("--config", required=True, action="append", help="a rareid config")
    parser.add_argument("--out", required=True, help="output file, e.g. splits/market.json")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file")
    return parser


def main(argv: Sequence[str]) -> int:
    """``rareid splits --config CONF.yaml --out FILE.json``: write the frozen MLR split."""
    import yaml
    from jsonargparse import ArgumentParser as TypedParser

    parser = build_parser()
    args = parser.parse_args(list(argv))
    # Imported once the arguments are read: --help and usage errors need no Lightning.
    from rareid.data.datamodule import ReIDDataModule
    from rareid.data.splitfile import write_split_file

    data: dict[str, Any] = {}
    for config in args.config:
        try:
            loaded = yaml.safe_load(Path(config).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            parser.error(f"--config {config}: cannot read it ({err})")
        data.update((loaded.get("data") or {}) if isinstance(loaded, dict) else {})
    data.pop("split_file", None)  # the file is what is being written
    typed = TypedParser(exit_on_error=False)
    typed.add_class_arguments(ReIDDataModule, "data")
    try:
        config = typed.parse_object({"data": data})
        datamodule = typed.instantiate_classes(config).data
        digest = write_split_file(datamodule, args.out, overwrite=args.overwrite)
    except (ValueError, FileNotFoundError, FileExistsError, TypeError) as err:
        parser.error(f"{type(err).__name__}: {err}")
    except Exception as err:  # jsonargparse's own parse errors
        parser.error(str(err).splitlines()[0])
    print(f"split file: {args.out} (sha256 {digest})")
    return 0
