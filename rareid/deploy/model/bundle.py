"""A model bundle: a folder of plain files that serves a trained model without unpickling
anything, and where one comes from.

``rareid export --format bundle`` writes ``config.json`` (the network's options, input size,
normalisation, rates, sub-vector sizes, training data, calibration thresholds if any),
``model.safetensors`` (the weights), ``model.onnx`` (the same network for the torch-free
runtimes), ``README.md`` (a model card) and ``SHA256SUMS`` (``sha256sum -c`` checks it too).
Every file listed there is checked before use: a changed or truncated file is refused in one
line. Reading a bundle needs neither torch nor pickle.

A bundle is named by a folder, or by a hub id ``hf-hub:org/name``, resolved in this order:
the folder ``org/name`` if it exists, the local hub cache laid out as ``huggingface_hub`` lays
it out (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``:
``models--org--name/refs/main`` names the snapshot under ``snapshots/``), then the network
through ``huggingface_hub`` when it is installed and not told to stay offline.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rareid.deploy.model.arrays import file_sha256
from rareid.runs import UsageError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
ONNX_FILE = "model.onnx"
CARD_FILE = "README.md"
SUMS_FILE = "SHA256SUMS"
#: What ``config.json`` says it is.
BUNDLE_FORMAT = "rareid-bundle"
HUB_PREFIX = "hf-hub:"


class BundleError(UsageError):
    """A bundle that is missing, incomplete or changed since export (one line at the CLI)."""


def is_bundle(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding a bundle's ``config.json``."""
    return Path(path).is_dir() and (Path(path) / CONFIG_FILE).is_file()


def write_sums(folder: Path, names: list[str]) -> Path:
    """``SHA256SUMS`` of ``names`` in ``folder``, in the format ``sha256sum -c`` reads."""
    lines = [f"{file_sha256(folder / name)}  {name}\n" for name in names]
    path = folder / SUMS_FILE
    path.write_text("".join(lines))
    return path


def verify_bundle(folder: str | os.PathLike) -> dict[str, Any]:
    """The bundle's configuration once every file of ``SHA256SUMS`` matches its hash; a
    missing, changed or truncated file is a :class:`BundleError` naming it."""
    folder = Path(folder)
    sums = folder / SUMS_FILE
    if not is_bundle(folder) or not sums.is_file():
        raise BundleError(
            f"bundle {str(folder)!r} is not a model bundle (no {CONFIG_FILE} or {SUMS_FILE}); "
            "write one with `rareid export --format bundle`"
        )
    for line in sums.read_text().splitlines():
        if not line.strip():
            continue
        expected, _, name = line.partition("  ")
        path = folder / name
        if not path.is_file():
            raise BundleError(f"bundle {str(folder)!r}: {name} is missing; export it again")
        if file_sha256(path) != expected.strip():
            raise BundleError(
                f"bundle {str(folder)!r}: {name} does not match its SHA-256 in {SUMS_FILE} "
                f"(changed or truncated after export, {path.stat().st_size} bytes); export or "
                "download the bundle again"
            )
    config = json.loads((folder / CONFIG_FILE).read_text())
    if config.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"bundle {str(folder)!r}: {CONFIG_FILE} is not a rareid bundle's")
    return config


def hub_cache() -> Path:
    """The folder the hub client caches models in (its own environment variables honoured)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    return Path(home) / "hub"


def cached_snapshot(repo_id: str, cache: Path, revision: str = "main") -> Path | None:
    """The snapshot folder of ``repo_id`` in a hub cache, or None when it is not cached."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    ref = repo / "refs" / revision
    commit = ref.read_text().strip() if ref.is_file() else revision
    snapshot = repo / "snapshots" / commit
    return snapshot if is_bundle(snapshot) else None


def resolve_bundle(spec: str | os.PathLike, weights: str | os.PathLike | None = None) -> Path:
    """The local folder of a bundle named by a path or ``hf-hub:org/name``.

    ``weights`` (``--weights PATH``) is used as it is. A hub id is looked up as a local folder,
    then in :func:`hub_cache`, then downloaded; offline, one line names the id, the cache folder
    and ``--weights PATH``.
    """
    if weights:
        return Path(weights)
    text = str(spec)
    if not text.startswith(HUB_PREFIX):
        return Path(text)
    repo_id = text[len(HUB_PREFIX) :].strip("/")
    if repo_id.count("/") != 1:
        raise BundleError(f"{text!r}: expected hf-hub:ORG/NAME")
    if is_bundle(repo_id):
        return Path(repo_id)
    cache = hub_cache()
    if (snapshot := cached_snapshot(repo_id, cache)) is not None:
        return snapshot
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    if not offline:
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(repo_id, cache_dir=cache))
        except Exception:  # no client, no network, no such repository: the same advice
            pass
    raise BundleError(
        f"{text}: not a local folder, not in the hub cache {cache} (models--"
        f"{repo_id.replace('/', '--')}) and the hub cannot be reached; download it where there "
        "is a network, or pass --weights PATH (a bundle folder)"
    )
