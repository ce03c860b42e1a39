"""What every dataset reader shares: record types, errors, folder helpers, image checks.

A reader turns a dataset folder into :class:`DatasetFiles` (original identities, any
order); :func:`finalize` verifies, relabels and sorts them into :class:`ReIDSplits`:

* training identities are relabelled ``0..C-1`` in sorted order of the original id
  (the classifier needs dense labels); query/gallery keep the original ids, so ranked
  lists can be traced back to files;
* records are sorted by path, so the same folder always gives the same lists;
* pid ``-1`` (Market-1501 "junk") is the only thing ever dropped, and it is counted in
  the logged summary; pid ``0`` (distractor) is allowed in the gallery only;
* malformed input (missing folder, a file name that does not parse, an empty split)
  raises :class:`DatasetNotFoundError` / :class:`DatasetFormatError` naming the path and
  what to do, never a silent skip;
* only image files directly inside a split folder are read: non-image files
  (``Thumbs.db``, ``readme.txt``), hidden files (``.DS_Store``, macOS ``._*.jpg``) are not
  data and are ignored; sub-folders are ignored with a warning.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "IMAGE_EXTENSIONS",
    "BadImageError",
    "DatasetFiles",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "ImageRecord",
    "ReIDSplits",
    "bad_images_message",
    "check_int_option",
    "draw_test_ids",
    "finalize",
    "find_bad_images",
    "header_problem",
    "image_height",
    "image_problem",
    "list_images",
    "require_dir",
    "require_root",
    "verify_headers",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


class DatasetNotFoundError(FileNotFoundError):
    """A dataset root, folder or file is missing."""


class DatasetFormatError(ValueError):
    """A dataset is present but its content does not follow the expected layout."""


class BadImageError(DatasetFormatError):
    """One or more image files cannot be decoded (``verify_images=True``)."""


@dataclass(frozen=True)
class ImageRecord:
    """One image: absolute ``path``, identity ``pid`` and 0-based camera ``camid``.

    ``pid`` is relabelled ``0..C-1`` in the training split and the original id in
    query/gallery (``0`` marks a gallery distractor).
    """

    path: str
    pid: int
    camid: int


@dataclass
class ReIDSplits:
    """The three splits of a re-ID dataset, ready for a DataModule."""

    name: str
    train: list[ImageRecord]
    query: list[ImageRecord]
    gallery: list[ImageRecord]
    num_classes: int
    #: True where queries are real low-resolution images (CAVIAR): their level is estimated
    #: from their size instead of being synthesised.
    query_is_lowres: bool = False
    #: Original identity of each training label (``train_ids[label]``); empty when the
    #: labels are the identities themselves (a hand-built dataset).
    train_ids: tuple[int, ...] = ()
    #: Real low-resolution images of training identities (CAVIAR's far camera), labelled
    #: like ``train``. Never trained on: they are the validation queries of held-out ids.
    train_lowres: list[ImageRecord] = field(default_factory=list)

    def summary(self) -> str:
        """A small table of identities / images / cameras per split (for logs)."""
        lines = [f"{self.name}:", f"  {'split':<8}{'ids':>7}{'images':>9}{'cameras':>9}"]
        for split, records in (
            ("train", self.train),
            ("query", self.query),
            ("gallery", self.gallery),
        ):
            ids = len({r.pid for r in records})
            cams = len({r.camid for r in records})
            lines.append(f"  {split:<8}{ids:>7}{len(records):>9}{cams:>9}")
        return "\n".join(lines)


@dataclass
class DatasetFiles:
    """What a reader found, before verification, relabelling and sorting.

    Records carry the dataset's original identities. A reader registered with
    :func:`rareid.data.readers.register_dataset` returns one of these.
    """

    name: str
    source: Path
    train: list[ImageRecord]
    query: list[ImageRecord]
    gallery: list[ImageRecord]
    query_is_lowres: bool = False
    notes: list[str] = field(default_factory=list)
    train_lowres: list[ImageRecord] = field(default_factory=list)


def finalize(
    raw: DatasetFiles, *, verify_images: bool = False, skip_bad_images: bool = False
) -> ReIDSplits:
    """Verify (optionally), relabel the training ids densely, sort, log a summary."""
    splits = {"train": raw.train, "query": raw.query, "gallery": raw.gallery}
    if verify_images or skip_bad_images:
        splits = verify_splits(raw.name, splits, skip=skip_bad_images, notes=raw.notes)
    for split in ("query", "gallery"):
        if not splits[split]:
            raise DatasetFormatError(f"{raw.name} at {raw.source}: the {split} split is empty")
    train_pids = sorted({r.pid for r in splits["train"]})
    relabel = {pid: label for label, pid in enumerate(train_pids)}
    train = sorted(
        (ImageRecord(r.path, relabel[r.pid], r.camid) for r in splits["train"]),
        key=lambda r: r.path,
    )
    dataset = ReIDSplits(
        name=raw.name,
        train=train,
        query=sorted(splits["query"], key=lambda r: r.path),
        gallery=sorted(splits["gallery"], key=lambda r: r.path),
        num_classes=len(train_pids),
        query_is_lowres=raw.query_is_lowres,
        train_ids=tuple(train_pids),
        train_lowres=sorted(
            (ImageRecord(r.path, relabel[r.pid], r.camid) for r in raw.train_lowres),
            key=lambda r: r.path,
        ),
    )
    text = dataset.summary().replace(f"{raw.name}:", f"{raw.name} at {raw.source}:", 1)
    if raw.notes:
        text += "\n" + "\n".join(f"  note: {n}" for n in raw.notes)
    logger.info("%s", text)
    return dataset


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``; hidden and non-image files are ignored."""
    images: list[Path] = []
    subdirs = 0
    with os.scandir(folder) as it:
        for entry in it:
            if entry.name.startswith("."):  # .DS_Store, macOS "._x.jpg" resource forks
                continue
            if entry.is_dir():
                subdirs += 1
                continue
            if os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
                images.append(Path(entry.path))
    if subdirs:
        logger.warning(
            "%s: ignored %d sub-folder(s); images are read from this folder only", folder, subdirs
        )
    return sorted(images)


def require_dir(path: Path, what: str, hint: str) -> None:
    if not path.is_dir():
        raise DatasetNotFoundError(f"{what}: missing folder {path} ({hint})")


def require_root(root: Path, display: str, hint: str) -> None:
    if not root.exists():
        raise DatasetNotFoundError(f"{display} root {root} does not exist ({hint})")
    if not root.is_dir():
        raise DatasetNotFoundError(f"{display} root {root} is not a folder ({hint})")


def draw_test_ids(ids: Sequence[Any], num_test: int, seed: int) -> set[Any]:
    """``num_test`` identities drawn from sorted ``ids`` with a seeded numpy Generator."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(ids), size=num_test, replace=False)
    return {ids[int(i)] for i in chosen}


def check_int_option(name: str, value: Any, minimum: int) -> int:
    """A reader option that must be an integer >= ``minimum``, named in the error."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"option {name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"option {name} must be >= {minimum}, got {value}")
    return int(value)


def image_problem(path: str) -> str | None:
    """Why ``path`` is not a usable image, or None if it decodes to a non-empty image."""
    import cv2

    try:
        data = Path(path).read_bytes()
    except OSError as err:
        return f"cannot read ({err.strerror or err})"
    if not data:
        return "empty file"
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        return "cannot be decoded"
    tail = data.rstrip(b"\x00\r\n ")[-64:]
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in tail:
        return "truncated JPEG (no end-of-image marker)"
    if data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in tail:
        return "truncated PNG (no IEND chunk)"
    return None


def verify_splits(
    name: str,
    splits: dict[str, list[ImageRecord]],
    *,
    skip: bool,
    notes: list[str],
) -> dict[str, list[ImageRecord]]:
    from tqdm.auto import tqdm

    unique = sorted({r.path for records in splits.values() for r in records})
    bad: dict[str, str] = {}
    for path in tqdm(unique, desc=f"Verifying {name} images", unit="img"):
        problem = image_problem(path)
        if problem is not None:
            bad[path] = problem
    if not bad:
        return splits
    if not skip:
        listed = sorted(bad.items())
        lines = [f"  {p}: {why}" for p, why in listed[:100]]
        if len(listed) > 100:
            lines.append(f"  ... and {len(listed) - 100} more")
        raise BadImageError(
            f"{name}: {len(bad)} unreadable or corrupt image(s):\n"
            + "\n".join(lines)
            + "\nreplace them, or pass skip_bad_images=True to leave them out"
        )
    logger.warning(
        "%s: skipped %d unreadable or corrupt image(s) (skip_bad_images=True)", name, len(bad)
    )
    for path, why in sorted(bad.items()):
        logger.debug("skipped %s: %s", path, why)
    notes.append(f"skipped {len(bad)} unreadable image(s) (skip_bad_images=True)")
    return {split: [r for r in records if r.path not in bad] for split, records in splits.items()}


#: Images with more pixels than this are refused before decoding: a person crop is never
#: that large, and decoding one (a "decompression bomb") can take tens of gigabytes.
MAX_IMAGE_PIXELS = 64 * 1024 * 1024

#: Files up to this size are decoded in full by :func:`header_problem` (it costs no more than
#: reading their header); no real person crop is that small.
TINY_IMAGE_BYTES = 1024


def _decode_problem(path: str) -> str | None:
    import cv2

    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None or image.size == 0:
        return "not a readable image (cannot be decoded)"
    return None


def header_problem(path: str) -> str | None:
    """Why ``path`` is not a usable image, from its header and last bytes only (cheap).

    Catches missing, empty, unidentifiable and truncated JPEG/PNG files without decoding
    the pixels (files of at most :data:`TINY_IMAGE_BYTES` are decoded); a file that passes can
    still fail to decode (then the loader names it).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
            if not head:
                return "empty file"
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64))
            tail = handle.read().rstrip(b"\x00\r\n ")
    except OSError as err:
        return f"cannot read ({err.strerror or err})"
    if head[:2] == b"\xff\xd8" and b"\xff\xd9" not in tail[-16:]:
        return "truncated JPEG (no end-of-image marker)"
    if head == b"\x89PNG\r\n\x1a\n" and b"IEND" not in tail[-16:]:
        return "truncated PNG (no IEND chunk)"
    if size <= TINY_IMAGE_BYTES:
        return _decode_problem(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Image.DecompressionBombError:
        return too_large(*_header_size(path))
    except (OSError, UnidentifiedImageError, ValueError) as err:
        return f"not a readable image ({err})"
    if width < 1 or height < 1:
        return "image of size zero"
    if width * height > MAX_IMAGE_PIXELS:
        return too_large(width, height)
    return None


def too_large(width: int, height: int) -> str:
    """The problem of an image over :data:`MAX_IMAGE_PIXELS` (never decoded)."""
    size = f"{width}x{height} pixels" if width and height else "its header's size"
    return (
        f"too large to decode ({size}, limit {MAX_IMAGE_PIXELS // (1024 * 1024)} megapixels): "
        "no person crop is this big; crop or downscale it"
    )


def _header_size(path: str) -> tuple[int, int]:
    """(width, height) from the header without PIL's pixel limit, or (0, 0)."""
    from PIL import Image

    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(path) as image:
            return image.size
    except Exception:  # any header PIL cannot read: the size is simply unknown
        return 0, 0
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def find_bad_images(paths: Iterable[str]) -> dict[str, str]:
    """``{path: problem}`` of the files of ``paths`` that fail :func:`header_problem`."""
    bad = {}
    for path in sorted(set(paths)):
        problem = header_problem(path)
        if problem is not None:
            bad[path] = problem
    return bad


def bad_images_message(bad: dict[str, str], what: str, limit: int = 100) -> str:
    """``what: N unreadable or truncated image(s):`` and one line per file (up to ``limit``)."""
    listed = sorted(bad.items())
    lines = [f"  {p}: {why}" for p, why in listed[:limit]]
    if len(listed) > limit:
        lines.append(f"  ... and {len(listed) - limit} more")
    return f"{what}: {len(bad)} unreadable or truncated image(s):\n" + "\n".join(lines)


def verify_headers(paths: Iterable[str], what: str) -> None:
    """Header-check every file of ``paths``; raise :class:`BadImageError` naming the bad ones."""
    bad = find_bad_images(paths)
    if bad:
        raise BadImageError(
            bad_images_message(bad, what)
            + "\nreplace or remove them (or set verify_eval_images=false to skip this check)"
        )


def image_height(path: str) -> int:
    """Native height of an image file, read from its header (no full decode)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return int(image.size[1])
    except (OSError, UnidentifiedImageError) as err:
        raise OSError(f"could not read the size of image {path!r}: {err}") from None


#: What libjpeg says when it fills in the missing or broken part of an image.
DAMAGE_WARNINGS = ("Corrupt JPEG data", "Premature end of JPEG file")


def decode_strictly(path: str) -> tuple[np.ndarray | None, str | None]:
    """``cv2.imread`` of ``path`` (BGR) with what the decoder complained about: libjpeg
    decodes a damaged JPEG (cut short, then ended) with only a warning of its own on the
    process's stderr, which names no file. That warning is caught here and returned as the
    problem (the image is then ``None``), so the caller can name the file; other remarks of
    the decoder are passed on with the file's name."""
    import tempfile

    import cv2

    sys.stderr.flush()
    with tempfile.TemporaryFile() as capture:
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            image = cv2.imread(path, cv2.IMREAD_COLOR)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        said = " ".join(capture.read().decode(errors="replace").split())
    if image is None:
        return None, "unreadable or not an image"
    if any(marker in said for marker in DAMAGE_WARNINGS):
        return None, f"damaged image (the decoder says: {said})"
    if said:  # a remark on a usable image (a PNG's colour profile): shown, with the file
        print(f"{path}: {said}", file=sys.stderr)
    return image, None


def bad_images_found(
    bad: dict[str, str], what: str, policy: str, log: logging.Logger, frozen: bool = False
) -> None:
    """Raise naming ``bad`` (``policy`` "error", or a frozen split file, which cannot leave
    images out), or (``policy`` "skip") say in one line on ``log`` what is skipped."""
    if policy == "error" or frozen:
        advice = (
            "replace them, or write a new split file without them"
            if frozen
            else "replace or remove them, or set data.bad_images=skip to leave them out"
        )
        raise BadImageError(f"{bad_images_message(bad, what)}\n{advice}")
    names = sorted(bad)
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    log.warning(
        "%s: skipped %d unreadable or truncated image(s) (data.bad_images=skip): %s%s",
        what,
        len(names),
        ", ".join(f"{path} ({bad[path]})" for path in names[:3]),
        more,
    )
