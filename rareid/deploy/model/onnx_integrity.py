"""An exported ONNX file that is damaged or altered is refused in one line.

``rareid export`` records a SHA-256 of the graph's weights (its initializers) in the file's
metadata; loading recomputes it, so a file whose weights were changed after export (a flipped
bit, a hand edit) is refused instead of giving wrong embeddings without a word. A file that
onnxruntime cannot parse (empty, text, truncated) is described in a few words.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

#: Metadata key of the weights' hash.
WEIGHTS_KEY = "rareid_weights_sha256"


class OnnxFileError(ValueError):
    """An ONNX file that is not the one ``rareid export`` wrote (one line at the CLI)."""


def weights_sha256(proto: Any) -> str:
    """SHA-256 over the names, types, shapes and values of a model's initializers."""
    from onnx import numpy_helper

    digest = hashlib.sha256()
    for tensor in sorted(proto.graph.initializer, key=lambda item: item.name):
        array = numpy_helper.to_array(tensor)
        digest.update(f"{tensor.name}|{array.dtype}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def describe_unparsable(path: Path) -> str:
    """What an ONNX file onnxruntime refused is, in a few words."""
    size = path.stat().st_size
    if size == 0:
        return "is an empty file (0 bytes)"
    head = path.read_bytes()[:256]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if text and all(char.isprintable() or char.isspace() for char in text):
        return f"is a text file, not an ONNX model (it starts with {text.strip()[:30]!r})"
    return f"is damaged or truncated ({size} bytes)"


def open_session(path: Path, providers: list[str], threads: int | None = None) -> Any:
    """An onnxruntime session of ``path`` (``threads``: its intra-op threads, default the
    runtime's); an unparsable file is an :class:`OnnxFileError`."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=providers)
    except Exception:  # onnxruntime raises its own exception types (InvalidProtobuf, Fail ...)
        raise OnnxFileError(
            f"ONNX model {str(path)!r} {describe_unparsable(path)}; write it again with "
            "`rareid export --ckpt CHECKPOINT`"
        ) from None


def check_weights(path: Path, metadata: dict[str, str]) -> None:
    """Refuse a file whose weights differ from the ones hashed at export."""
    expected = metadata.get(WEIGHTS_KEY)
    if not expected:
        return
    try:
        import onnx
    except ImportError:
        print(
            f"note: {path}: its weights are not checked against the export (needs the onnx "
            "package: pip install 'rareid[deploy]')",
            file=sys.stderr,
        )
        return
    if weights_sha256(onnx.load(str(path))) != expected:
        raise OnnxFileError(
            f"ONNX model {str(path)!r}: its weights differ from the ones `rareid export` wrote "
            "(the file was changed or damaged after export); export the checkpoint again"
        )
