"""Fault injection: ``kill -9`` a real ``rareid fit`` at random points, then resume it.

Never a checkpoint that fails to load, no temporary file or lock left once the run is
resumed, and the resumed run ends at the last epoch in the last mask phase.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rareid.cli import main
from rareid.runs import LOCK_NAME, TEMP_PREFIX
from tests.helpers import tiny_run_args

REPO = Path(__file__).resolve().parents[1]
MAX_EPOCHS = 6


def _fit_command(data: Path, run: Path) -> list[str]:
    options = {
        "data.input_size": [32, 16],
        "model.embedding_dim": 16,
        "trainer.max_epochs": MAX_EPOCHS,
        "trainer.limit_train_batches": 1,
        "trainer.check_val_every_n_epoch": 2,
        "progressive.phase_epochs": [0, 1, 2, 3],
    }
    return [sys.executable, "-m", "rareid", "fit", *tiny_run_args(data, run, options)]


def _state(folder: Path) -> tuple[int | None, list[Path]]:
    """mtime of last.ckpt (None if absent) and the temporary files of saves in progress."""
    last = folder / "last.ckpt"
    mtime = last.stat().st_mtime_ns if last.exists() else None
    return mtime, sorted(folder.glob(f"{TEMP_PREFIX}*"))


def _kill_when(process: subprocess.Popen, ready, log: Path, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            pytest.fail(
                f"fit ended (status {process.returncode}) before the kill:\n{log.read_text()}"
            )
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            pytest.fail(f"no checkpoint written within {timeout} s:\n{log.read_text()}")
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.mark.faults
def test_kill_9_at_random_points_then_resume(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert main(["synth", "--out", str(data), "--identities", "8", "--seed", "1"]) == 0
    run = tmp_path / "run"
    folder = run / "checkpoints"
    command = _fit_command(data, run)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    rng = random.Random(0)
    epochs: list[int] = []
    for attempt in range(3):
        before, _ = _state(folder)
        log = tmp_path / f"attempt{attempt}.log"
        resume = [] if attempt == 0 else ["--ckpt_path", "last"]
        with log.open("w") as out:
            process = subprocess.Popen(
                [*command, *resume], env=env, stdout=out, stderr=subprocess.STDOUT
            )
            if attempt == 0:
                # In the middle of a save: a temporary file is being written.
                _kill_when(process, lambda: bool(_state(folder)[1]), log)
            else:
                # At a random moment after this run's first completed save.
                _kill_when(process, lambda before=before: _state(folder)[0] != before, log)
                time.sleep(rng.uniform(0.0, 1.0))
                if process.poll() is None:
                    process.send_signal(signal.SIGKILL)
                    process.wait()
        for checkpoint in folder.glob("*.ckpt"):
            torch.load(checkpoint, map_location="cpu", weights_only=False)  # never truncated
        if (folder / "last.ckpt").exists():
            epochs.append(torch.load(folder / "last.ckpt", weights_only=False)["epoch"])
    assert (run / LOCK_NAME).exists()  # the killed run could not remove it
    # The save killed in attempt 0 left its temporary file; the next start removed it.
    assert "removed 1 unfinished checkpoint file(s)" in (tmp_path / "attempt1.log").read_text()

    final = subprocess.run(
        [*command, "--ckpt_path", "last"], env=env, capture_output=True, text=True, timeout=600
    )
    assert final.returncode == 0, final.stdout + final.stderr
    assert "Traceback" not in final.stderr
    assert epochs == sorted(epochs) and epochs, epochs  # each resume went forward
    last = torch.load(folder / "last.ckpt", weights_only=False)
    assert last["epoch"] == MAX_EPOCHS - 1
    assert last["callbacks"]["ProgressiveMaskTraining"]["phase"] == 4
    assert not list(folder.glob(f"{TEMP_PREFIX}*")) and not (run / LOCK_NAME).exists()
    assert "no longer runs" in final.stdout  # the stale lock was taken over with a word
