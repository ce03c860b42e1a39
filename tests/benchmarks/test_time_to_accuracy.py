"""``benchmarks/time_to_accuracy.py``: targets from the anchor's plateau, speed-ups, the table."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "time_to_accuracy.py"


@pytest.fixture(scope="module")
def tta():
    spec = importlib.util.spec_from_file_location("time_to_accuracy", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules["time_to_accuracy"] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


def write_run(folder: Path, curve: list[tuple[float, float, float]], rank1: float) -> None:
    """A run folder as a fit with FitClock and validation leaves it (wall s, CPU s, val mAP)."""
    log = folder / "csv" / "version_0"
    log.mkdir(parents=True)
    lines = ["epoch,step,time/cpu_s,time/steps,time/train_s,val/mAP,val/rank1,train/loss"]
    for epoch, (wall, cpu, score) in enumerate(curve):
        steps = 10 * (epoch + 1)
        lines.append(f"{epoch},{steps},{cpu},{steps},{wall},{score},{score},")
        lines.append(f"{epoch},{steps},,,,,,1.0")  # a training row: no validation figures
    (log / "metrics.csv").write_text("\n".join(lines) + "\n")
    results = folder / "results"
    results.mkdir()
    (results / "results.json").write_text(
        json.dumps({"rank1": rank1, "mAP": rank1, "hr/rank1": rank1, "level1/rank1": rank1})
    )


def test_speed_up_to_the_anchors_plateau(tta, tmp_path: Path) -> None:
    anchor = [
        (10.0 * e, 5.0 * e, score) for e, score in enumerate([0.2, 0.4, 0.6, 0.8, 0.8, 0.8], 1)
    ]
    fast = [(4.0 * e, 2.0 * e, score) for e, score in enumerate([0.5, 0.77, 0.79], 1)]
    slow = [(10.0 * e, 5.0 * e, 0.3) for e in range(1, 4)]
    write_run(tmp_path / "full-anchor" / "seed0", anchor, 0.4)
    write_run(tmp_path / "full-fast" / "seed0", fast, 0.5)
    write_run(tmp_path / "full-slow" / "seed0", slow, 0.1)
    names = ["full · anchor", "full · fast", "full · slow"]
    text = tta.report(tmp_path, names, [0], "anchor", "mAP", 0.95, tmp_path / "chart.png")
    timing = text.split("Fitted")[0]
    rows = {
        tuple(line.split(" | ")[1:3]): line
        for line in timing.splitlines()
        if line.startswith("| full")
    }
    # target 0.95 * 80 = 76: the anchor reaches it after 40 s (20 CPU s), the fast one after 8 s
    assert "| 1/1 | 40.0 | 20.0 | 40.0 | 1.00× | 1.00× | 80.0 |" in rows[("anchor", "first")]
    assert "| 1/1 | 8.0 | 4.0 | 20.0 | 5.00× | 5.00× | 68.7 |" in rows[("fast", "first")]
    assert "| 1/1 | 8.0 | 4.0 | 20.0 | 5.00× | 5.00× | 68.7 |" in rows[("fast", "2 in a row")]
    assert "not reached" in rows[("slow", "first")]
    assert "| full | fast | 50.0 | 50.0 | 50.0 | 50.0 | 12.0 |" in text
    assert (tmp_path / "chart.png").stat().st_size > 0


def test_two_in_a_row_ignores_a_single_spike(tta) -> None:
    curve = tta.Curve(wall=[1, 2, 3, 4], cpu=[1, 2, 3, 4], steps=[1, 2, 3, 4], score=[9, 1, 9, 9])
    assert curve.first_at(5) == 0
    assert curve.first_at(5, in_a_row=2) == 2
    assert curve.first_at(10, in_a_row=2) is None


def test_resumed_fits_keep_one_row_per_step(tta, tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_run(run, [(1.0, 1.0, 0.1), (2.0, 2.0, 0.2)], 0.1)
    again = run / "csv" / "version_1"
    again.mkdir()
    header = "epoch,step,time/cpu_s,time/steps,time/train_s,val/mAP,val/rank1\n"
    (again / "metrics.csv").write_text(header + "1,20,2.5,20,2.5,0.25,0.25\n2,30,3,30,3,0.3,0.3\n")
    curve = tta.read_curve(run, "mAP")
    assert curve.steps == [10.0, 20.0, 30.0]
    assert curve.score == pytest.approx([10.0, 25.0, 30.0])
