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
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Literal, NoReturn

LOCK_NAME = ".rareid.lock"
CHECKPOINT_DIR = "checkpoints"
#: Prefix of the temporary files of atomic checkpoint writes (see ``rareid.checkpointing``).
TEMP_PREFIX = ".tmp-"
CheckpointAlias = Literal["best", "last"]


class UsageError(ValueError):
    """A problem with what the user asked for, reported as one line (exit status 2)."""


class RunFailure(RuntimeError):
    """A run that cannot go on (a NaN loss, a full disk), reported as one line (exit status 1)."""


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default once: not when the help already says it, nor when it is
    ``None`` (the help says what an unset option means)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is None or "default:" in text or "(default" in text:
            return text
        return super()._get_help_string(action)


class OneLineArgumentParser(argparse.ArgumentParser):
    """``argparse`` for rareid's helper commands: an error is one line, not usage + error;
    ``--help`` shows each default once (see :class:`DefaultsHelpFormatter`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("formatter_class") is argparse.ArgumentDefaultsHelpFormatter:
            kwargs["formatter_class"] = DefaultsHelpFormatter
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        print(f"{self.prog}: error: {text} (see {self.prog} --help)", file=sys.stderr)
        self.exit(2)


#: The package's own folder: an error raised by code under it is rareid's (see raised_by_rareid).
PACKAGE_DIR = Path(__file__).resolve().parent
#: Stages of a Lightning subcommand, as :func:`one_line_errors` tells them apart.
Stage = Literal["parse", "build", "run"]


def raised_by_rareid(error: BaseException) -> bool:
    """Whether rareid's own code raised ``error`` (a check of the user's input, on purpose).

    Errors raised inside third-party code (torch, numpy, Lightning) keep their traceback:
    they may be bugs, and one line would hide where they come from.
    """
    frame = error.__traceback__
    if frame is None:
        return False
    while frame.tb_next is not None:
        frame = frame.tb_next
    return Path(frame.tb_frame.f_code.co_filename).resolve().is_relative_to(PACKAGE_DIR)


def is_usage_error(
    error: BaseException, stage: Stage, usage: tuple[type[BaseException], ...] = ()
) -> bool:
    """Whether ``error`` is the user's to fix. A ``UsageError`` always is, and so is one of
    ``usage`` (Lightning's word for a bad option) once parsing is done. While the classes are
    built (``build``) a ValueError or FileNotFoundError is the configuration's wherever it was
    raised (Lightning's trainer options raise them); a TypeError, and once the run has started
    any of these, only when rareid raised it on purpose."""
    if isinstance(error, UsageError):
        return True
    if stage == "parse":
        return False
    if isinstance(error, usage):
        return True
    if stage == "build":
        if isinstance(error, ValueError | FileNotFoundError):
            return True
        return isinstance(error, TypeError) and raised_by_rareid(error)
    ours = ValueError | TypeError | FileNotFoundError | FileExistsError
    return isinstance(error, ours) and raised_by_rareid(error)


@contextmanager
def one_line_errors(
    prog: Callable[[], str],
    stage: Callable[[], Stage],
    usage: tuple[type[BaseException], ...] = (),
) -> Iterator[None]:
    """Errors of the user's making (:func:`is_usage_error`) as one ``PROG: error: ...`` line
    and exit status 2, a run that cannot go on (``RunFailure``) as one line and exit status 1;
    every other error keeps its traceback."""
    try:
        yield
    except RunFailure as error:
        print(f"{prog()}: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    except Exception as error:
        if not is_usage_error(error, stage(), usage):
            raise
        print(f"{prog()}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


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


class RunFolder:
    """The run-folder policy of ``rareid fit/validate/test/predict``: one process per folder
    (a lock), a stale lock or an interrupted save cleaned up with a word, and no silent
    overwrite of an earlier run's checkpoints (``fit`` resumes with ``--ckpt_path last`` or
    starts again with ``--overwrite``, which deletes them only once everything is checked).

    Only rank zero owns the folder: DDP workers re-run the same command and leave it alone.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        fresh_fit: bool = False,
        overwrite: bool = False,
        rank_zero: bool = True,
    ) -> None:
        self.root = Path(root)
        self.fresh_fit = fresh_fit  # a fit that does not resume a checkpoint
        self.overwrite = overwrite
        self.rank_zero = rank_zero
        self.lock: RunLock | None = None

    def open(self) -> RunFolder:
        """Check the folder can be written, take its lock, and refuse to start a fresh fit
        over an earlier run's checkpoints unless ``overwrite``."""
        check_writable(self.root)
        if not self.rank_zero:
            return self
        self.lock = RunLock(self.root).acquire()
        if self.lock.took_over is not None:
            print(
                f"taking over the run folder {self.root}: its lock was left by process "
                f"{self.lock.took_over}, which no longer runs"
            )
        folder = checkpoint_dir(self.root)
        removed = remove_stale_temp_files(folder)
        if removed:
            print(
                f"removed {removed} unfinished checkpoint file(s) of an interrupted save "
                f"in {folder}"
            )
        found = existing_checkpoints(self.root) if self.fresh_fit else []
        if found and not self.overwrite:
            self.close()
            raise UsageError(
                f"{folder} already holds {describe(found)} from an earlier "
                "run: resume it with --ckpt_path last, start again with --overwrite (the "
                "old checkpoints are deleted), or choose another --trainer.default_root_dir"
            )
        return self

    def apply_overwrite(self) -> None:
        """Delete the earlier run's checkpoints (``--overwrite``), once every option, the data
        and the model are checked."""
        if not self.overwrite or not self.rank_zero:
            return
        found = existing_checkpoints(self.root)
        for path in found:
            path.unlink()
        if found:
            print(
                f"--overwrite: deleted {len(found)} checkpoint(s) of an earlier run in "
                f"{checkpoint_dir(self.root)}: {describe(found)}"
            )
        # The earlier run's test results and embeddings would sit beside the new checkpoints
        # as if they were theirs.
        for name in ("results", "predictions"):
            folder = Path(self.root) / name
            if folder.is_dir():
                count = sum(1 for item in folder.rglob("*") if item.is_file())
                shutil.rmtree(folder)
                print(f"--overwrite: deleted {folder} ({count} file(s) of the earlier run)")

    def close(self) -> None:
        if self.lock is not None:
            self.lock.release()


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
