"""``benchmarks/real_size.py``: the GPU settings and their CPU fallback, the projection, the
fraction folders and the per-stage peak memory (no stage is run at size here)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "real_size.py"


@pytest.fixture(scope="module")
def real_size():
    spec = importlib.util.spec_from_file_location("real_size", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules["real_size"] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


def test_gpu_slot_takes_the_gpu_settings_or_falls_back_to_the_cheapest_cpu_stage(
    real_size, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = real_size.parse(["--gpu-slot", "--out", str(tmp_path)])
    assert (args.device, args.stages, args.load_batches) == ("cpu", ["load"], 2)
    assert "no GPU: the GPU figures are not measured" in capsys.readouterr().out
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    args = real_size.parse(["--gpu-slot", "--out", str(tmp_path)])
    assert args.device == "cuda" and args.precisions == ["fp32", "bf16"]
    assert args.stages == list(real_size.STAGES) and args.fraction == 1.0
    assert args.eval_backbone is None and args.fit_precision == "bf16-mixed"


def test_projection_scales_the_measured_step_to_the_recipe(real_size, tmp_path: Path) -> None:
    args = real_size.parse(["--out", str(tmp_path)])
    args.steps_per_epoch, args.step_seconds = 300, {"bf16": 0.1}
    (line,) = real_size.projection(args)
    assert "1.0 h on 1 cpu device" in line and "0.2 h on 4 with DDP" in line  # 120*300*0.1 s


def test_fraction_folders_drop_junk_and_keep_every_nth_image(real_size, tmp_path: Path) -> None:
    folder = tmp_path / "bounding_box_test"
    folder.mkdir()
    for name in ["-1_c1s1_000001_01.jpg"] + [f"0001_c1s1_{i:06d}_01.jpg" for i in range(10)]:
        (folder / name).write_bytes(b"x")
    out, count = real_size._subset(folder, tmp_path / "half", 0.5, skip_junk=True)
    assert count == 5 and sorted(p.name for p in out.iterdir())[0] == "0001_c1s1_000000_01.jpg"
    assert real_size._subset(folder, tmp_path / "all", 1.0, skip_junk=False)[1] == 11


def test_a_stage_reports_its_own_peak_memory(real_size) -> None:
    allocate = "import numpy; a = numpy.ones(20_000_000); print(a.sum())"  # 0.15 GiB
    wall, peak, status, output = real_size.run_child([sys.executable, "-c", allocate], 1)
    assert status == 0 and output.strip() == "20000000.0"
    assert 0.149 < peak < 2 and wall > 0
