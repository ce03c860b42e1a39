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


#: Helper subcommands that show their help and refuse bad options without importing torch: the
#: parser is built first, the heavy modules are imported once the arguments are read.
TORCH_FREE_HELPERS = ("synth", "splits", "aggregate", "index", "search", "calibrate", "export")
#: Every helper subcommand: none imports Lightning to show its help or refuse its options
#: (``experiment`` runs trainings and is allowed torch).
HELPERS = (*TORCH_FREE_HELPERS, "experiment")
#: A usage error of each helper found after parsing, by its own checks (before any file is read).
CHECKED_USAGE_ERRORS = (
    ["index", "--ckpt", "m.ckpt", "--gallery", "g", "--out", "i.npz", "--batch-size", "0"],
    ["search", "--index", "i.npz", "--query", "q", "--top-k", "0"],
    ["calibrate", "--index", "i.npz", "--labels", "l.csv", "--far", "2"],
    ["export", "--ckpt", "no_such.ckpt"],
)


def torch_free_calls() -> list[list[str]]:
    """``rareid --help``, an unknown subcommand, and for every torch-free helper its ``--help``,
    an argparse error (unknown option) and, for the deploy helpers, an error of their checks."""
    calls = [["--help"], ["bogus"], ["index"]]
    for name in TORCH_FREE_HELPERS:
        calls += [[name, "--help"], [name, "--no-such-option"]]
    return calls + [list(argv) for argv in CHECKED_USAGE_ERRORS]


_PROBE = """
import contextlib, io, json, os, sys
from rareid.cli import main
os.chdir(sys.argv[2])
report = {}
for argv in json.loads(sys.argv[1]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        status = main(argv)
    heavy = sorted(
        {name.split(".")[0] for name in sys.modules}
        & {"torch", "lightning", "timm", "albumentations", "cv2"}
    )
    report[" ".join(argv)] = [status, heavy]
print(json.dumps(report))
"""


def _probe(calls: list[list[str]], cwd: Path) -> dict[str, list]:
    """Run ``main(argv)`` for each call in order in one fresh interpreter; for each, the exit
    status and the heavy packages imported so far."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(calls), str(cwd)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_helper_help_and_usage_errors_do_not_import_torch(tmp_path: Path) -> None:
    """The helpers' ``--help`` and usage errors answer at once: the import cost is guarded by
    the modules they import (in a fresh interpreter), not by a clock. Calls run in one process,
    so a heavy import by any of them shows in every later report."""
    calls = torch_free_calls()
    report = _probe(calls, tmp_path)
    for argv in calls:
        status, heavy = report[" ".join(argv)]
        expected = 0 if "--help" in argv else 2
        assert status == expected and heavy == [], (argv, status, heavy)


def test_helper_subcommands_do_not_import_lightning(tmp_path: Path) -> None:
    """No helper imports Lightning (or timm) for its help or its usage errors."""
    calls = [[name, flag] for name in HELPERS for flag in ("--help", "--no-such-option")]
    report = _probe(calls, tmp_path)
    for name in HELPERS:
        for flag, expected in (("--help", 0), ("--no-such-option", 2)):
            status, heavy = report[f"{name} {flag}"]
            assert status == expected, (name, flag, status)
            assert "lightning" not in heavy and "timm" not in heavy, (name, flag, heavy)
