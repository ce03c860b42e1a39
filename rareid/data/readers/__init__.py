"""Dataset readers and their registry: ``build_dataset(name, root, **options)``.

Each reader is a callable ``reader(root: Path, **options) -> DatasetFiles`` whose
keyword-only parameters are its options (with defaults); ``build_dataset`` accepts exactly
those, plus ``verify_images`` / ``skip_bad_images`` which every dataset has. A user adds a
dataset from their own code::

    from rareid.data.readers import DatasetFiles, ImageRecord, register_dataset

    def read_mine(root, *, split_seed: int = 0) -> DatasetFiles: ...

    register_dataset("mine", read_mine, aliases=("my-data",))

Built-in names (aliases are case-insensitive, "-", "_", "." and spaces ignored):

==============  ==============================================================
name            reader
==============  ==============================================================
market1501      :mod:`~rareid.data.readers.market` (Market-1501-v15.09.15)
dukemtmc        :mod:`~rareid.data.readers.market` (DukeMTMC-reID)
folder          :mod:`~rareid.data.readers.market` (``train/ query/ gallery/``)
synthetic       :mod:`~rareid.data.readers.market` (``rareid synth`` output)
cuhk03          :mod:`~rareid.data.readers.cuhk03` (MLR-CUHK03 split)
caviar          :mod:`~rareid.data.readers.caviar` (CAVIAR4REID, real LR queries)
==============  ==============================================================
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from rareid.data.readers.base import (
    BadImageError,
    DatasetFiles,
    DatasetFormatError,
    DatasetNotFoundError,
    ImageRecord,
    ReIDSplits,
    finalize,
)
from rareid.data.readers.caviar import read_caviar
from rareid.data.readers.cuhk03 import extract_cuhk03, read_cuhk03
from rareid.data.readers.market import FolderLayoutReader

__all__ = [
    "DATASET_NAMES",
    "BadImageError",
    "DatasetFiles",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "ImageRecord",
    "ReIDSplits",
    "Reader",
    "build_dataset",
    "dataset_names",
    "extract_cuhk03",
    "reader_options",
    "register_dataset",
    "resolve_dataset_name",
]

Reader = Callable[..., DatasetFiles]

#: Options every dataset accepts; they act on the reader's output, not on the layout.
COMMON_OPTIONS: dict[str, bool] = {"verify_images": False, "skip_bad_images": False}

_READERS: dict[str, Reader] = {}
_ALIASES: dict[str, str] = {}


def _alias_key(name: str) -> str:
    return re.sub(r"[\s_.\-]", "", name.strip().lower())


def register_dataset(name: str, reader: Reader, aliases: Iterable[str] = ()) -> None:
    """Make ``build_dataset(name, ...)`` (and ``data.dataset: name``) use ``reader``.

    ``reader(root: Path, **options)`` returns :class:`DatasetFiles`; its keyword-only
    parameters with defaults are the dataset's options. Registering a name or alias that
    already belongs to another reader is an error.
    """
    if not isinstance(name, str) or not _alias_key(name):
        raise ValueError(f"dataset name must be a non-empty string, got {name!r}")
    if not callable(reader):
        raise TypeError(f"reader for {name!r} must be callable, got {reader!r}")
    reader_options(reader)  # its parameters must be usable as options
    canonical = _alias_key(name)
    keys = [canonical, *(_alias_key(a) for a in aliases)]
    for key in keys:
        owner = _ALIASES.get(key)
        if owner is not None and _READERS[owner] is not reader:
            raise ValueError(
                f"dataset name or alias {key!r} is already registered for {owner!r}; "
                "choose another name"
            )
    _READERS[canonical] = reader
    for key in keys:
        _ALIASES[key] = canonical


def dataset_names() -> tuple[str, ...]:
    """Canonical names of every registered dataset, built-in ones first."""
    return tuple(_READERS)


def resolve_dataset_name(name: str) -> str:
    """Canonical dataset name for ``name`` (case-insensitive, aliases allowed)."""
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a string, got {type(name).__name__}")
    key = _alias_key(name)
    if key not in _ALIASES:
        aliases = ", ".join(sorted(_ALIASES))
        raise ValueError(
            f"unknown dataset {name!r}: valid names are {', '.join(dataset_names())} "
            f"(aliases, case-insensitive, '-'/'_' ignored: {aliases})"
        )
    return _ALIASES[key]


def reader_options(reader: Reader | str) -> dict[str, Any]:
    """The options a reader (or a registered dataset name) accepts, with their defaults."""
    if isinstance(reader, str):
        reader = _READERS[resolve_dataset_name(reader)]
    options = {}
    params = list(inspect.signature(reader).parameters.values())
    for param in params[1:]:  # the first parameter is the root folder
        if param.kind not in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD):
            raise TypeError(f"reader {reader!r}: option {param.name!r} must be a keyword")
        if param.default is param.empty:
            raise TypeError(f"reader {reader!r}: option {param.name!r} needs a default")
        options[param.name] = param.default
    return options


def _check_type(name: str, value: Any, default: Any) -> Any:
    """An option value of the same kind as its default (bools are not ints)."""
    if isinstance(default, bool):
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"option {name} must be a bool, got {value!r}")
        return bool(value)
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"option {name} must be an int, got {value!r}")
        return int(value)
    return value


def build_dataset(name: str, root: str | os.PathLike[str], **options: Any) -> ReIDSplits:
    """Read dataset ``name`` from ``root`` with the options its reader declares.

    Args:
        name: a registered name or alias (:func:`dataset_names`), case-insensitive.
        root: folder that contains the dataset's own folder (e.g. the one holding
            ``Market-1501-v15.09.15/``), or that folder itself.
        verify_images: decode every image once with OpenCV and raise naming the bad files.
        skip_bad_images: leave out (and count) undecodable images instead of raising;
            implies ``verify_images``.
        **options: the reader's own options (e.g. ``split_seed`` and ``cuhk03_num_test`` for
            CUHK03); :func:`reader_options` lists them.

    Raises:
        ValueError: unknown ``name``, bad option value, malformed dataset content.
        TypeError: an option this dataset does not have, or of the wrong type.
        FileNotFoundError: missing root, folder or file.
    """
    canonical = resolve_dataset_name(name)
    reader = _READERS[canonical]
    own = reader_options(reader)
    valid = {**own, **COMMON_OPTIONS}
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(
            f"build_dataset() got option(s) {', '.join(map(repr, unknown))} that dataset "
            f"{canonical!r} does not have; valid options are {', '.join(valid)}"
        )
    checked = {key: _check_type(key, value, valid[key]) for key, value in options.items()}
    common = {key: checked.pop(key, default) for key, default in COMMON_OPTIONS.items()}
    root_path = Path(os.path.abspath(os.path.expanduser(os.fspath(root))))
    files = reader(root_path, **checked)
    return finalize(files, **common)


for _name, _reader, _aliases in (
    ("market1501", FolderLayoutReader("market1501"), ("market", "market1501v150915")),
    ("dukemtmc", FolderLayoutReader("dukemtmc"), ("duke", "dukemtmcreid")),
    ("cuhk03", read_cuhk03, ("cuhk",)),
    ("caviar", read_caviar, ("caviar4reid", "caviara")),
    ("folder", FolderLayoutReader("folder"), ("generic", "custom")),
    ("synthetic", FolderLayoutReader("synthetic"), ("synth",)),
):
    register_dataset(_name, _reader, _aliases)

#: The built-in dataset names.
DATASET_NAMES: tuple[str, ...] = dataset_names()
