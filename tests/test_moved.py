"""The modules that moved under ``rareid.deploy`` and ``rareid.evaluation`` still import from
their old names, with a DeprecationWarning naming the new place, and give the same objects."""

from __future__ import annotations

import importlib
import sys

import pytest

MOVED = {
    "rareid.index": ("rareid.deploy.index", "GalleryIndex"),
    "rareid.search": ("rareid.deploy.search", "prefix_search"),
    "rareid.inference": ("rareid.deploy.inference", "load_model"),
    "rareid.calibrate": ("rareid.deploy.calibrate", "calibrate_levels"),
    "rareid.export": ("rareid.deploy.export", "OnnxEmbedder"),
    "rareid.rerank": ("rareid.evaluation.rerank", "k_reciprocal_distances"),
}


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_module_imports_and_warns(old: str, monkeypatch) -> None:
    new, name = MOVED[old]
    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(DeprecationWarning, match=rf"{old} moved to .*{new}"):
        module = importlib.import_module(old)
    assert getattr(module, name) is getattr(importlib.import_module(new), name)
    assert name in dir(module)
    with pytest.raises(AttributeError, match="no attribute"):
        module.no_such_name  # noqa: B018


def test_old_rerank_module_also_serves_the_gallery_search(monkeypatch) -> None:
    monkeypatch.delitem(sys.modules, "rareid.rerank", raising=False)
    with pytest.warns(DeprecationWarning):
        from rareid.rerank import rerank_search
    from rareid.deploy.rerank import rerank_search as new

    assert rerank_search is new
