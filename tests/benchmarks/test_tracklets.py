"""``benchmarks/tracklets.py``: mean ± std over a variant's checkpoints, the table, the chart and
the per-checkpoint cache (which must not serve another checkpoint's or option's scores)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "tracklets.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("tracklets_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules["tracklets_benchmark"] = module
    spec.loader.exec_module(module)
    return module


def _run(bench, rank1: float) -> dict:
    """Per-trial scores of one checkpoint: ``rank1`` (two trials around it) everywhere."""
    cell = {"rank1": [rank1 - 0.1, rank1 + 0.1], "mAP": [rank1 / 2, rank1 / 2]}
    return {"per_trial": {c: {m: dict(cell) for m in bench.METHODS} for c in bench.COLUMNS}}


def test_across_seeds_table_and_chart(bench, tmp_path: Path) -> None:
    table = bench.across_seeds([_run(bench, 0.5), _run(bench, 0.7), _run(bench, 0.6)])
    mean, std = table["ramp"]["level-aware"]["rank1"]
    assert mean == pytest.approx(60.0) and std == pytest.approx(10.0)  # ddof 1 over seeds
    assert table["scenes"]["max"]["mAP"][0] == pytest.approx(30.0)
    assert bench.across_seeds([_run(bench, 0.4)])["constant"]["average"]["rank1"][1] == 0.0
    lines = bench.table_lines({"full": table})
    assert lines[0].startswith("| variant | method | constant rank-1")
    assert "| full | level-aware | 60.0 ± 10.0 | 30.0 ± 5.0 |" in lines[4]
    assert len(lines) == 2 + len(bench.METHODS)
    bench.chart({"full": table, "ide": table}, tmp_path / "chart.png")
    assert (tmp_path / "chart.png").stat().st_size > 0


def test_cache_is_keyed_on_checkpoint_and_options(
    bench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = tmp_path / "a.ckpt"
    checkpoint.write_bytes(b"x")
    calls = []

    def measured(ckpt: str, args: argparse.Namespace, scenes_root: Path) -> dict:
        calls.append(ckpt)
        return {**_run(bench, 0.5)["per_trial"], "links": {"pair_precision": 0.5}}

    monkeypatch.setattr(bench, "one_checkpoint", measured)
    args = argparse.Namespace(identities=100, seed=0, trials=10, length=12, min_frames=2)
    folder = tmp_path / "full" / "0"
    first = bench.cached_run(str(checkpoint), folder, args, tmp_path / "video")
    assert bench.cached_run(str(checkpoint), folder, args, tmp_path / "video") == first
    assert len(calls) == 1
    args.trials = 3
    bench.cached_run(str(checkpoint), folder, args, tmp_path / "video")
    checkpoint.write_bytes(b"y")  # same size, other content
    bench.cached_run(str(checkpoint), folder, args, tmp_path / "video")
    assert len(calls) == 3
    stored = json.loads((folder / "tracklets.json").read_text())
    assert stored["options"]["trials"] == 3 and stored["links"] == {"pair_precision": 0.5}
