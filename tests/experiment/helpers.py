"""What the experiment tests share: the repository root, a grid file written from text, and a
tiny ``rareid experiment`` run in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def write_grid(tmp_path: Path, text: str) -> Path:
    """``text`` as the grid file ``grid.yaml`` in ``tmp_path``."""
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    return path


#: Options that shrink every run of a grid to a tiny model, two batches and one epoch.
TINY_SETS = [
    "data.input_size=[64, 32]",
    "data.p=3",
    "data.k=2",
    "data.trials=2",
    "data.num_workers=0",
    "model.embedding_dim=32",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.logger=false",
    "trainer.enable_progress_bar=false",
    "checkpoint.monitor=null",
    "progressive.phase_epochs=[0, 0, 0, 0]",
    "report.tsne=false",
]


def run_experiment(grid: Path, data: Path, *extra: str) -> subprocess.CompletedProcess:
    """``rareid experiment GRID --seeds 0`` on ``data`` with :data:`TINY_SETS`, in a subprocess."""
    sets = [f"--set={s}" for s in [*TINY_SETS, f"data.root={data}"]]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from rareid.cli import main; sys.exit(main())",
            "experiment",
            str(grid),
            "--seeds",
            "0",
            *sets,
            *extra,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
