"""One run, one folder: the run folder's lock, checkpoint names and the checks done before a run.

A run folder (``trainer.default_root_dir``) holds ``checkpoints/{best,last}.ckpt``,
``results/``, ``predictions/`` and the loggers' files. Two processes writing into one
folder interleave logs and overwrite each other's checkpoints, so a run holds a lock file
with its pid for as long as it runs; a lock whose process is gone is stale and is taken
over with a word.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO, Literal, NoReturn

LOCK_NAME = ".rareid.lock"
CHECKPOINT_DIR = "checkpoints"
#: Prefix of the temporary files of atomic checkpoint writes (see ``rareid.checkpointing``).
TEMP_PREFIX = ".tmp-"
CheckpointAlias = Literal["best", "last"]


class UsageError(ValueError):
    """A problem with what the user asked for, reported as one line (exit status 2)."""


class RunFailure(RuntimeError):
    """A run that cannot go on (a NaN loss, a full disk), reported as one line (exit status 1)."""


class OneLineArgumentParser(argparse.ArgumentParser):
    """``argparse`` for rareid's helper commands: an error is one line, not usage + error."""

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        print(f"{self.prog}: error: {text} (see {self.prog} --help)", file=sys.stderr)
        self.exit(2)


def checkpoint_dir(root: str | os.PathLike) -> Path:
    return Path(root) / CHECKPOINT_DIR


def existing_checkpoints(root: str | os.PathLike) -> list[Path]:
    folder = checkpoint_dir(root)
    return sorted(folder.glob("*.ckpt")) if folder.is_dir() else []


def remove_stale_temp_files(folder: str | os.PathLike) -> int:
    """Delete temporary files left by a checkpoint write that was killed; returns the count.

    Only called while this process holds the run's lock, so no live writer owns them.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    stale = [path for path in folder.glob(f"{TEMP_PREFIX}*") if path.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def check_writable(root: str | os.PathLike, option: str = "--trainer.default_root_dir") -> Path:
    """Create ``root`` if needed and prove that files can be written there."""
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=TEMP_PREFIX + "probe-"):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UsageError(
            f"the run folder {str(root)!r} is not writable ({reason}); "
            f"choose another folder with {option}"
        ) from None
    return root


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """A lock file holding ``pid host``; refuses a second live owner, takes over stale ones."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.path = Path(root) / LOCK_NAME
        self.held = False
        self.took_over: int | None = None  # pid of the dead owner of a stale lock

    def _owner(self) -> tuple[int, str] | None:
        try:
            pid, _, host = self.path.read_text().strip().partition(" ")
            return int(pid), host
        except (OSError, ValueError):
            return None

    def acquire(self) -> RunLock:
        host = socket.gethostname()
        for _ in range(2):
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is not None and owner[1] == host and not _process_alive(owner[0]):
                    self.took_over = owner[0]
                    self.path.unlink(missing_ok=True)
                    continue
                who = "an unreadable lock" if owner is None else f"process {owner[0]} on {owner[1]}"
                raise UsageError(
                    f"the run folder {str(self.path.parent)!r} is in use by {who} "
                    f"(lock file {self.path}); wait for that run to end, or choose another "
                    "folder with --trainer.default_root_dir (delete the lock file only if "
                    "no run is using the folder)"
                ) from None
            with os.fdopen(descriptor, "w") as handle:
                handle.write(f"{os.getpid()} {host}\n")
            self.held = True
            return self
        raise UsageError(f"could not take the lock {self.path}; another run raced for it")

    def release(self) -> None:
        if self.held:
            owner = self._owner()
            if owner is not None and owner[0] == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False


def resolve_checkpoint(
    value: str | None, root: str | os.PathLike, has_validation: bool = True
) -> tuple[str | None, str | None]:
    """Turn ``best`` / ``last`` into ``<root>/checkpoints/{best,last}.ckpt``.

    Returns the path (or ``None``) and a note to print, if any. Without validation
    there is no ``best``: ``last`` is used instead, and the note says so. Other values
    are paths and are returned as given.
    """
    if value not in ("best", "last"):
        return value, None
    folder = checkpoint_dir(root)
    if value == "best" and not has_validation:
        return str(folder / "last.ckpt"), (
            "no validation identities in this run, so no best.ckpt: using last.ckpt"
        )
    return str(folder / f"{value}.ckpt"), None


def describe(paths: Iterable[Path]) -> str:
    return ", ".join(path.name for path in paths)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write`` on a temporary file beside ``path``, fsync it, rename it over ``path`` and
    fsync the folder: a reader sees the old file or the new one, never half of one, even after
    a crash. The temporary file (``TEMP_PREFIX``) goes away on any failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMP_PREFIX}{path.name}.")
    try:
        os.fchmod(descriptor, 0o666 & ~_umask())  # mkstemp makes 0600; give what open() would
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    # The rename itself is durable only once the folder's entry is on disk.
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
