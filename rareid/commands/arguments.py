"""Checks of command-line paths that run before any heavy import, so that a usage error costs
no torch start-up."""

from __future__ import annotations

from pathlib import Path


def checkpoint_problem(path: str | None, option: str = "--ckpt") -> str | None:
    """One line saying why ``path`` is not a checkpoint file (or a model bundle), or ``None``
    when it is one."""
    if not path:
        return f"{option}: no checkpoint given; pass {option} PATH"
    file = Path(path)
    if path.startswith("hf-hub:") or (file / "config.json").is_file():
        return None  # a model bundle: its files are checked when it is loaded
    if file.is_dir():
        found = sorted(file.rglob("*.ckpt"))[:3]
        hint = f", e.g. {', '.join(str(item) for item in found)}" if found else ""
        return f"{option}: {path!r} is a folder: pass a .ckpt file{hint}"
    if not file.is_file():
        return f"{option}: checkpoint {path!r} does not exist"
    return None


def cannot_write(what: str, path: object, error: OSError) -> str:
    """One line for an output that cannot be written (a read-only folder, a file in the way of
    a folder, a full disk), saying what to do."""
    reason = error.strerror or str(error)
    if error.filename is not None and str(error.filename) != str(path):
        reason += f": {str(error.filename)!r}"
    return f"{what}: cannot write {str(path)!r} ({reason}); choose a place you can write to"
