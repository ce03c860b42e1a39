"""An index whose gallery folder moved: ``rareid index --add`` on another folder than the one
indexed would take every file for new (and every old one for deleted) and re-embed the whole
gallery under ``../`` names. The move is named in one line instead; ``--rebase`` points the
index at the new folder and keeps the embeddings of the files that are the same there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rareid.deploy.gallery.index import GalleryIndexError
from rareid.deploy.model.inference import file_sha256

if TYPE_CHECKING:
    from rareid.deploy.gallery.index import GalleryIndex


@dataclass
class Rebase:
    """What ``--rebase`` did: embeddings kept, files to embed again, files not in the new
    folder (dropped by the update), and whether the calibration was dropped."""

    old_root: str
    new_root: str
    kept: int = 0
    changed: int = 0
    missing: int = 0
    calibration_dropped: bool = False

    def describe(self) -> str:
        line = (
            f"--rebase: the gallery moved from {self.old_root} to {self.new_root}: kept "
            f"{self.kept} embedding(s) of the same files, {self.changed} file(s) differ and are "
            f"embedded again, {self.missing} not in the new folder are dropped"
        )
        if self.calibration_dropped:
            line += "; the calibration is dropped (it was measured on other content): run "
            line += "`rareid calibrate` again"
        return line


def moved_gallery(index: GalleryIndex, gallery: str | os.PathLike) -> bool:
    """Whether ``gallery`` is another folder than the one ``index`` was built on."""
    return Path(gallery).resolve() != Path(index.root).resolve()


def moved_message(index: GalleryIndex, gallery: str | os.PathLike) -> str:
    """The one line of a moved gallery, with the two ways on."""
    return (
        f"--add: the index was built on {index.root} but --gallery is {Path(gallery).resolve()}: "
        "if the gallery moved, pass --rebase to keep the embeddings of files that are the same "
        "there (the others are embedded again); otherwise build a new index without --add"
    )


def _same_file(old: Path, new: Path, size: int, mtime_ns: int) -> bool:
    """Whether ``new`` holds the content indexed as ``old``: the same bytes when the old file
    is still there, else the same size and modification time (a move keeps both)."""
    try:
        stat = new.stat()
    except OSError:
        return False
    if old.is_file():
        return file_sha256(old) == file_sha256(new)
    return (int(stat.st_size), int(stat.st_mtime_ns)) == (size, mtime_ns)


def rebase(index: GalleryIndex, gallery: str | os.PathLike) -> Rebase:
    """Point ``index`` at ``gallery``: files found there unchanged keep their embedding (their
    size and time are taken from the new file), the others are marked for embedding; a
    calibration is dropped unless every indexed file was kept."""
    old_root, new_root = Path(index.root), Path(gallery).resolve()
    if not new_root.is_dir():
        raise GalleryIndexError(f"--gallery: {str(gallery)!r} is not a folder")
    report = Rebase(str(old_root), str(new_root))
    for position, name in enumerate(index.paths):
        new = new_root / name
        size, mtime_ns = (int(value) for value in index.stats[position])
        if not new.is_file():
            report.missing += 1
        elif _same_file(old_root / name, new, size, mtime_ns):
            stat = new.stat()
            index.stats[position] = (int(stat.st_size), int(stat.st_mtime_ns))
            report.kept += 1
        else:
            index.stats[position] = (-1, -1)  # embedded again by the update
            report.changed += 1
    index.root = str(new_root)
    if index.calibration and (report.changed or report.missing):
        index.calibration = None
        report.calibration_dropped = True
    return report
