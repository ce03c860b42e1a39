"""The floors of the package only look down and no two sibling modules import each other: the
import-linter contracts of pyproject.toml hold, and evaluation never reaches deploy."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
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


#: Helper subcommand calls that must not import torch at all (parser first, work after).
TORCH_FREE_CALLS = (["--help"], ["index", "--help"], ["index"], ["splits", "--help"], ["bogus"])
#: Every helper subcommand: none imports Lightning or timm to show its help.
HELPERS = ("synth", "splits", "aggregate", "index", "search", "calibrate", "export", "experiment")

_PROBE = """
import contextlib, io, json, sys
from rareid.cli import main
report = {}
for argv in json.loads(sys.argv[1]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        status = main(argv)
    heavy = sorted({name.split(".")[0] for name in sys.modules} & {"torch", "lightning", "timm"})
    report[" ".join(argv)] = [status, heavy]
print(json.dumps(report))
"""


def test_helper_subcommands_do_not_import_lightning() -> None:
    """``rareid --help``, the helpers' ``--help`` and their usage errors answer at once: the
    import cost is guarded by the modules they import (in a fresh interpreter), not by a clock."""
    calls = [*TORCH_FREE_CALLS, *([name, "--help"] for name in HELPERS)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(calls)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for argv in TORCH_FREE_CALLS:
        status, heavy = report[" ".join(argv)]
        assert status in (0, 2) and heavy == [], (argv, status, heavy)
    for name in HELPERS:
        status, heavy = report[f"{name} --help"]
        assert status == 0 and "lightning" not in heavy and "timm" not in heavy, (name, heavy)
