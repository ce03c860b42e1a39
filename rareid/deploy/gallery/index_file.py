"""The ``.npz`` file of a gallery index: written atomically, read without pickle, and refused
with one :class:`GalleryIndexError` naming it when it is cut short, not an archive, or lacks the
arrays and metadata of an index (the fix is always to rebuild it with ``rareid index``)."""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from rareid.runs import atomic_write

FORMAT_VERSION = 2
#: Older formats this rareid still reads (version 1: no file sizes and times).
READABLE_VERSIONS = (1, 2)
#: The arrays every index file holds (``stats`` and the approximate index's are optional).
INDEX_ARRAYS = ("meta", "embeddings", "paths", "sizes", "levels")
Loaded = TypeVar("Loaded")


class GalleryIndexError(ValueError):
    """An index file or an index operation that cannot go on (named so, not a traceback)."""


def write_index_file(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` atomically (:func:`rareid.runs.atomic_write`)."""
    return atomic_write(path, lambda handle: np.savez(handle, **arrays))


def read_index_file(
    path: str | os.PathLike, build: Callable[[dict[str, Any], dict[str, np.ndarray]], Loaded]
) -> Loaded:
    """``build(meta, arrays)`` of the index file at ``path``, once its arrays agree; whatever
    goes wrong reading or building it is one :class:`GalleryIndexError` naming the file."""
    path = Path(path)
    if path.is_dir():
        raise GalleryIndexError(
            f"index {str(path)!r} is a folder: pass the .npz file written by `rareid index`"
        )
    if not path.is_file():
        raise FileNotFoundError(f"index {str(path)!r} does not exist; build it with `rareid index`")
    kind = _not_an_archive(path)
    if kind is not None:
        raise GalleryIndexError(
            f"{str(path)!r} is not an index file ({kind}): give the .npz file written by "
            "`rareid index` (if it was one, it is damaged: rebuild it with `rareid index`)"
        )
    try:
        archive = np.load(path, allow_pickle=False)
        if not hasattr(archive, "files"):
            raise ValueError("a single NumPy array, not an archive of arrays")
        with archive as data:
            missing = [key for key in INDEX_ARRAYS if key not in data.files]
            if missing:
                raise ValueError(f"no {', '.join(missing)} array(s) in the archive")
            meta = json.loads(str(data["meta"]))
            arrays = {key: data[key] for key in data.files if key != "meta"}
        if not isinstance(meta, dict) or meta.get("format") != "rareid-gallery-index":
            raise ValueError("its metadata is not the one of an index")
        if meta.get("version") not in READABLE_VERSIONS:
            raise GalleryIndexError(
                f"{str(path)!r} has index format version {meta.get('version')}, this rareid "
                f"reads version {FORMAT_VERSION}: rebuild it with `rareid index`"
            )
        _check_arrays(arrays, [int(size) for size in meta["split_sizes"]], path)
        return build(meta, arrays)
    except PermissionError as error:
        raise GalleryIndexError(f"index {str(path)!r} cannot be read: {error.strerror}") from None
    except GalleryIndexError:
        raise
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as error:
        reason = f"no {error} entry" if isinstance(error, KeyError) else str(error)
        reason = " ".join(reason.split()) or type(error).__name__
        raise GalleryIndexError(
            f"{str(path)!r} is not a readable rareid index file (damaged, cut short or another "
            f"file: {reason}): rebuild it with `rareid index`"
        ) from None


def _not_an_archive(path: Path) -> str | None:
    """What ``path`` is when its first bytes are not those of a NumPy archive (``None`` when
    they are): a CSV or any other file gets its own words, not NumPy's guess that it holds
    pickled data."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(6)
    except OSError:
        return None  # said by the reader below
    if not head:
        return "an empty file"
    if head.startswith((b"PK\x03\x04", b"\x93NUMPY")):
        return None
    return "a text file" if head.isascii() else "another kind of file"


def _check_arrays(arrays: dict[str, np.ndarray], split_sizes: list[int], path: Path) -> None:
    """One row per path in every array, embeddings as wide as the sub-vectors, all finite."""
    embeddings = arrays["embeddings"]
    count = len(arrays["paths"])
    if not (
        embeddings.ndim == 2
        and embeddings.shape == (count, sum(split_sizes))
        and arrays["sizes"].size == 2 * count
        and arrays["levels"].size == count
    ):
        raise ValueError(
            f"arrays of different lengths or widths (embeddings {embeddings.shape}, "
            f"{count} paths, sub-vectors {split_sizes})"
        )
    if not np.isfinite(embeddings.astype(np.float32)).all():
        raise GalleryIndexError(
            f"{str(path)!r} holds NaN or infinite embeddings: rebuild it with `rareid index`"
        )
