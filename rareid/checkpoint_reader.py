"""The one reader of checkpoint files, for training (``--ckpt_path``) and deployment alike.

It imports torch but never Lightning, so ``load_model`` and the helper commands read
checkpoints the way ``rareid fit/test`` do. Every file that is not a rareid checkpoint
(missing, empty, text, truncated, a plain state dict, another torch file, pickled objects
beyond tensors) is a :class:`CheckpointError` naming the file and what it is, never torch's
own message, which suggests ``weights_only=False``: that would run whatever code the file
holds.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from rareid.runs import UsageError

#: What to do instead, the end of every message.
WRITTEN_BY = "give a checkpoint written by rareid fit (<run>/checkpoints/*.ckpt)"
#: What torch names a pickled object outside its allow-list ("Unsupported global: GLOBAL x.y").
_GLOBAL_PATTERN = re.compile(r"GLOBAL ([\w.]+)")


class CheckpointError(UsageError):
    """A file that is not a readable rareid checkpoint (one line, exit status 2 at the CLI)."""


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's contents on CPU, tensors and plain containers only (no code runs).

    A missing file, a folder, or a file that is not a Lightning checkpoint is a
    :class:`CheckpointError` whose message starts with ``checkpoint 'PATH'``.
    """
    path = Path(path)
    if path.is_dir():
        found = sorted(path.rglob("*.ckpt"))[:3]
        hint = f", e.g. {', '.join(str(file) for file in found)}" if found else ""
        raise CheckpointError(f"checkpoint {str(path)!r} is a folder: pass a .ckpt file{hint}")
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {str(path)!r} not found; give an existing file to --ckpt_path "
            "(or best / last for <default_root_dir>/checkpoints/{best,last}.ckpt)"
        )
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as error:  # unreadable (permissions, I/O error): the content is not to blame
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be read ({error.strerror or error}); "
            "check its permissions"
        ) from None
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file: torch raises many types
        raise CheckpointError(
            f"checkpoint {str(path)!r} {describe_unreadable(path, error)}; {WRITTEN_BY}"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(
            f"checkpoint {str(path)!r} {describe_foreign(checkpoint)}, not a Lightning "
            f"checkpoint; {WRITTEN_BY}"
        )
    if not isinstance(checkpoint["state_dict"], dict):
        raise CheckpointError(
            f"checkpoint {str(path)!r} holds a state_dict that is a "
            f"{type(checkpoint['state_dict']).__name__}, not a dict of tensors; {WRITTEN_BY}"
        )
    return checkpoint


def describe_foreign(content: Any) -> str:
    """What a torch file without a ``state_dict`` holds, in a few words."""
    if (
        isinstance(content, dict)
        and content
        and all(isinstance(value, torch.Tensor) for value in content.values())
    ):
        return f"holds a plain state dict ({len(content)} tensors, no model options)"
    return f"holds a {type(content).__name__} without a state_dict"


def describe_unreadable(path: Path, error: Exception) -> str:
    """What a file that ``torch.load(weights_only=True)`` refused is, in a few words."""
    size = path.stat().st_size
    if size == 0:
        return "is an empty file (0 bytes)"
    with path.open("rb") as handle:
        head = handle.read(512)
    is_zip, is_pickle = head.startswith(b"PK\x03\x04"), head[:1] == b"\x80"
    if isinstance(error, pickle.UnpicklingError) and (is_zip or is_pickle):
        found = _GLOBAL_PATTERN.search(str(error))
        if found is not None:
            return (
                f"holds pickled Python objects ({found.group(1)}) beyond tensors; rareid "
                "never loads those, as loading them would run code from the file"
            )
    if is_zip or is_pickle:
        return f"is damaged or truncated ({size} bytes; {type(error).__name__})"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as cut:  # a character split at the end of the sample is fine
        text = head[: cut.start].decode("utf-8") if cut.start >= len(head) - 3 else "\x00"
    if text and all(char.isprintable() or char.isspace() for char in text):
        first = text.strip().splitlines()[0][:40] if text.strip() else ""
        return f"is a text file, not a checkpoint (it starts with {first!r})"
    return f"is not a PyTorch checkpoint ({size} bytes of unknown content)"


#: Hex digits kept of a training file's SHA-256: a checkpoint records one per training image.
CONTENT_DIGEST_LENGTH = 16


def content_digest(path: str | os.PathLike) -> str | None:
    """A short SHA-256 of the file's bytes (``None`` when it cannot be read): a renamed copy
    of a training image has the digest of the original."""
    import hashlib

    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:CONTENT_DIGEST_LENGTH]
    except OSError:
        return None
