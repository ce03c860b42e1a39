"""Frozen MLR split files: the exact evaluation set, written once and read by any run.

Cross-resolution papers draw their splits privately, so their numbers are not comparable.
A split file fixes everything the evaluation draws: the train / validation / test
identities and, per stage (``val``, ``test``) and per trial, each query's file, rate and
level and the single-shot gallery files. ``data.split_file`` makes ``fit`` and ``test`` use
it; its ``sha256`` (a hash of the content) is what a report prints to say which split a
number comes from. The same configuration gives the same file, byte for byte.

Layout (JSON, keys sorted)::

    {"format": "rareid-mlr-split", "version": 1, "sha256": "...",
     "protocol": {dataset, dataset_options, seed, rates, eval_rates, trials, ...},
     "train_ids": [...], "val_ids": [...], "test_ids": [...],
     "stages": {"test": {"gallery": [{"file", "pid", "camid", "rate", "level",
                                      "synthesize", "trials": [0, 1, ...]}, ...],
                         "trials": [[{"file", "pid", "camid", "rate", "level",
                                      "synthesize"}, ...], ...],
                         "hr_queries": [...]},
                "val": {...}}}

File names are relative to the dataset root (``data.root``), so a split file travels
with the dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rareid.data.protocol import MAX_TRIALS, EvalTable, Role
from rareid.runs import OneLineArgumentParser

if TYPE_CHECKING:
    from rareid.data.datamodule import ReIDDataModule

__all__ = [
    "SplitFileError",
    "content_hash",
    "read_split_file",
    "split_document",
    "splits_main",
    "table_from_stage",
    "write_split_file",
]

FORMAT = "rareid-mlr-split"
VERSION = 1


class SplitFileError(ValueError):
    """A split file is unreadable, altered, or does not fit the dataset or the options."""


def _canonical(document: dict[str, Any]) -> bytes:
    body = {key: value for key, value in document.items() if key != "sha256"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def content_hash(document: dict[str, Any]) -> str:
    """SHA-256 of the document's content (every key but ``sha256`` itself)."""
    return hashlib.sha256(_canonical(document)).hexdigest()


def _entry(table: EvalTable, row: int, root: str) -> dict[str, Any]:
    path = table.paths[int(table.path_index[row])]
    return {
        "file": Path(os.path.relpath(path, root)).as_posix(),
        "pid": int(table.pid[row]),
        "camid": int(table.camid[row]),
        "rate": float(table.rate[row]),
        "level": int(table.level[row]),
        "synthesize": bool(table.synthesize[row]),
    }


def stage_from_table(table: EvalTable, root: str) -> dict[str, Any]:
    """One stage's evaluation set as JSON-ready lists (files relative to ``root``)."""
    gallery, hr_queries = [], []
    trials: dict[int, list[dict[str, Any]]] = {}
    for row in range(len(table)):
        role = int(table.role[row])
        entry = _entry(table, row, root)
        if role == Role.GALLERY:
            bits = int(table.gallery_trials[row])
            entry["trials"] = [trial for trial in range(MAX_TRIALS) if (bits >> trial) & 1]
            gallery.append(entry)
        elif role == Role.QUERY:
            trials.setdefault(int(table.trial[row]), []).append(entry)
        else:
            hr_queries.append(entry)
    count = max(trials, default=-1) + 1
    return {
        "gallery": gallery,
        "trials": [trials.get(trial, []) for trial in range(count)],
        "hr_queries": hr_queries,
    }


def table_from_stage(stage: dict[str, Any], root: str) -> EvalTable:
    """The :class:`EvalTable` of one stage of a split file (files resolved under ``root``)."""
    rows: list[tuple[dict[str, Any], Role, int, int]] = []
    for entry in stage["gallery"]:
        bits = 0
        for trial in entry["trials"]:
            bits |= 1 << int(trial)
        rows.append((entry, Role.GALLERY, -1, bits))
    for trial, queries in enumerate(stage["trials"]):
        rows.extend((entry, Role.QUERY, trial, 0) for entry in queries)
    rows.extend((entry, Role.HR_QUERY, -1, 0) for entry in stage["hr_queries"])
    paths: list[str] = []
    index: dict[str, int] = {}
    path_index = []
    for entry, *_ in rows:
        path = os.path.join(root, *entry["file"].split("/"))
        path_index.append(index.setdefault(path, len(index)))
        if len(index) > len(paths):
            paths.append(path)

    def column(values: list[Any], dtype: Any) -> np.ndarray:
        return np.asarray(values, dtype=dtype).reshape(-1)

    return EvalTable(
        paths=paths,
        path_index=column(path_index, np.int64),
        pid=column([entry["pid"] for entry, *_ in rows], np.int64),
        camid=column([entry["camid"] for entry, *_ in rows], np.int64),
        role=column([int(role) for _, role, _, _ in rows], np.int64),
        trial=column([trial for _, _, trial, _ in rows], np.int64),
        rate=column([entry["rate"] for entry, *_ in rows], np.float64),
        level=column([entry["level"] for entry, *_ in rows], np.int64),
        gallery_trials=column([bits for *_, bits in rows], np.int64),
        synthesize=column([entry["synthesize"] for entry, *_ in rows], bool),
    )


def split_document(datamodule: ReIDDataModule) -> dict[str, Any]:
    """The split file content of ``datamodule``'s configuration, hash included."""
    hp = datamodule.hparams
    root = os.path.abspath(os.path.expanduser(hp.root))
    split = datamodule.fit_split
    stages = {"test": stage_from_table(datamodule.eval_dataset("test").table, root)}
    if datamodule.has_validation:
        stages["val"] = stage_from_table(datamodule.eval_dataset("val").table, root)
    test = stages["test"]
    test_ids = sorted(
        {entry["pid"] for entry in test["gallery"] if entry["pid"] > 0}
        | {entry["pid"] for queries in test["trials"] for entry in queries}
    )
    document: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "protocol": datamodule.protocol_options(),
        "train_ids": sorted(split.train_ids),
        "val_ids": sorted(split.val_ids),
        "test_ids": test_ids,
        "stages": stages,
    }
    document["sha256"] = content_hash(document)
    return document


def encode(document: dict[str, Any]) -> bytes:
    """The bytes of a split file (sorted keys, so the same content gives the same bytes)."""
    return (json.dumps(document, sort_keys=True, indent=1, allow_nan=False) + "\n").encode()


def write_split_file(
    datamodule: ReIDDataModule, path: str | os.PathLike[str], overwrite: bool = False
) -> str:
    """Write ``datamodule``'s evaluation set to ``path``; returns its content hash."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    document = split_document(datamodule)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(encode(document))
    os.replace(tmp, path)
    return document["sha256"]


def read_split_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a split file: format, version and content hash."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise SplitFileError(f"split_file: {path} does not exist") from None
    except (OSError, ValueError) as err:
        raise SplitFileError(f"split_file: cannot read {path} as JSON ({err})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise SplitFileError(f"split_file: {path} is not a rareid split file")
    if document.get("version") != VERSION:
        raise SplitFileError(
            f"split_file: {path} has version {document.get('version')!r}; this rareid reads "
            f"version {VERSION}"
        )
    if document.get("sha256") != content_hash(document):
        raise SplitFileError(
            f"split_file: {path} was altered after it was written (its content does not "
            "match its sha256); write it again with `rareid splits`"
        )
    return document


def splits_main(argv: Sequence[str]) -> int:
    """``rareid splits --config CONF.yaml --out FILE.json``: write the frozen MLR split."""
    import yaml
    from jsonargparse import ArgumentParser as TypedParser

    from rareid.data.datamodule import ReIDDataModule

    parser = OneLineArgumentParser(
        prog="rareid splits",
        description="Write the exact MLR evaluation set of a config's data section to a file.",
    )
    parser.add_argument("--config", required=True, action="append", help="a rareid config")
    parser.add_argument("--out", required=True, help="output file, e.g. splits/market.json")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file")
    args = parser.parse_args(list(argv))
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
