"""The floors of the package only look down and no two sibling modules import each other: the
import-linter contracts of pyproject.toml hold, and evaluation never reaches deploy."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import grimp
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_the_checked_package_is_this_checkout() -> None:
    """The contracts below are checked on the tree under test, not on another installed copy."""
    spec = importlib.util.find_spec("rareid")
    assert spec is not None and Path(spec.origin).resolve().parent == ROOT / "rareid"


def test_import_contracts_hold(monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    assert lint_imports(str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True) == 0


def test_evaluation_never_imports_deploy() -> None:
    graph = grimp.build_graph("rareid", cache_dir=None)
    chain = graph.find_shortest_chain(
        importer="rareid.evaluation", imported="rareid.deploy", as_packages=True
    )
    assert chain is None, f"rareid.evaluation reaches rareid.deploy: {' -> '.join(chain)}"
