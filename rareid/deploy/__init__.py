"""Serving a trained model, in rooms that only look down: crop checks (``crops``); the model at
serving time (``model``: load, preprocess, embedding runtimes, export, bundles, the torch-free
``OnnxEmbedder`` and ``TrackerEmbedder``); the gallery index
(``gallery``: the index, its file and folder, updates, ANN); ranking (``search``: exact search
through a ranking engine, re-ranking) and verification (``verify``: calibration, labels,
verdicts). The ``rareid index|search|calibrate|export`` commands (:mod:`rareid.commands`) wrap
them.

The names below are imported on first use, so that ``import rareid.deploy`` costs nothing::

    from rareid.deploy import GalleryIndex, Searcher, load_model
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rareid.deploy.crops import check_crop
    from rareid.deploy.gallery.index import GalleryIndex
    from rareid.deploy.model.backend_onnx import OnnxBackend
    from rareid.deploy.model.backend_torch import TorchBackend
    from rareid.deploy.model.embedder import OnnxEmbedder
    from rareid.deploy.model.export import export_onnx
    from rareid.deploy.model.inference import Preprocess, load_model
    from rareid.deploy.model.tracker import TrackerEmbedder
    from rareid.deploy.search.exact import Searcher
    from rareid.deploy.search.rerank import rerank_search
    from rareid.deploy.verify.calibrate import calibrate_levels
    from rareid.deploy.verify.verdicts import level_threshold, verdict

#: Public name -> the module that defines it.
_HOMES = {
    "check_crop": "rareid.deploy.crops",
    "load_model": "rareid.deploy.model.inference",
    "Preprocess": "rareid.deploy.model.inference",
    "TorchBackend": "rareid.deploy.model.backend_torch",
    "OnnxBackend": "rareid.deploy.model.backend_onnx",
    "export_onnx": "rareid.deploy.model.export",
    "OnnxEmbedder": "rareid.deploy.model.embedder",
    "TrackerEmbedder": "rareid.deploy.model.tracker",
    "GalleryIndex": "rareid.deploy.gallery.index",
    "Searcher": "rareid.deploy.search.exact",
    "rerank_search": "rareid.deploy.search.rerank",
    "calibrate_levels": "rareid.deploy.verify.calibrate",
    "level_threshold": "rareid.deploy.verify.verdicts",
    "verdict": "rareid.deploy.verify.verdicts",
}

__all__ = [
    "GalleryIndex",
    "OnnxBackend",
    "OnnxEmbedder",
    "Preprocess",
    "Searcher",
    "TorchBackend",
    "TrackerEmbedder",
    "calibrate_levels",
    "check_crop",
    "export_onnx",
    "level_threshold",
    "load_model",
    "rerank_search",
    "verdict",
]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'rareid.deploy' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
