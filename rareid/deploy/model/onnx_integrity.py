"""An exported ONNX file that is damaged or altered is refused in one line.

``rareid export`` records a SHA-256 of the graph's weights (its initializers, as serialised)
in the file's metadata; loading recomputes it, so a file whose weights were changed after export
(a flipped bit, a hand edit) is refused instead of giving wrong embeddings without a word. The
hash is read off the protobuf wire format directly (a few lines below), so that checking a file
needs neither the ``onnx`` package nor its start-up. A file that onnxruntime cannot parse
(empty, text, truncated) is described in a few words.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

#: Metadata key of the weights' hash.
WEIGHTS_KEY = "rareid_weights_sha256"


class OnnxFileError(ValueError):
    """An ONNX file that is not the one ``rareid export`` wrote (one line at the CLI)."""


#: Protobuf field numbers: ModelProto.graph, GraphProto.initializer, TensorProto.name.
_GRAPH_FIELD, _INITIALIZER_FIELD, _NAME_FIELD = 7, 5, 8
_LENGTH_DELIMITED = 2


def _varint(data: memoryview, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7


def _fields(data: memoryview) -> list[tuple[int, memoryview]]:
    """The length-delimited fields (number, bytes) of one protobuf message; others skipped."""
    found, position = [], 0
    while position < len(data):
        key, position = _varint(data, position)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, position = _varint(data, position)
        elif wire == 1:
            position += 8
        elif wire == 5:
            position += 4
        elif wire == _LENGTH_DELIMITED:
            length, position = _varint(data, position)
            found.append((number, data[position : position + length]))
            position += length
        else:
            raise ValueError(f"unexpected protobuf wire type {wire}")
    if position != len(data):
        raise ValueError("truncated protobuf message")
    return found


def weights_sha256_of(serialised: bytes) -> str:
    """SHA-256 over the serialised initializers of a serialised ModelProto, by name."""
    data = memoryview(serialised)
    graphs = [value for number, value in _fields(data) if number == _GRAPH_FIELD]
    tensors = []
    for graph in graphs:
        for number, tensor in _fields(graph):
            if number == _INITIALIZER_FIELD:
                names = [bytes(v) for n, v in _fields(tensor) if n == _NAME_FIELD]
                tensors.append((names[0] if names else b"", tensor))
    digest = hashlib.sha256()
    for name, tensor in sorted(tensors, key=lambda item: item[0]):
        digest.update(name + b"|" + str(len(tensor)).encode() + b"|")
        digest.update(tensor)
    return digest.hexdigest()


def weights_sha256(proto: Any) -> str:
    """:func:`weights_sha256_of` an ONNX ``ModelProto`` in memory."""
    return weights_sha256_of(proto.SerializeToString())


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
        found = weights_sha256_of(path.read_bytes())
    except (ValueError, IndexError):
        found = ""
    if found != expected:
        raise OnnxFileError(
            f"ONNX model {str(path)!r}: its weights differ from the ones `rareid export` wrote "
            "(the file was changed or damaged after export); export the checkpoint again"
        )
